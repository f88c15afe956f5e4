package main

import (
	"fmt"
	"strconv"
	"strings"
)

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	if s == "" {
		return fmt.Errorf("empty topic")
	}
	*l = append(*l, s)
	return nil
}

// idListFlag collects a repeatable topic id flag.
type idListFlag []uint16

func (l *idListFlag) String() string {
	s := make([]string, len(*l))
	for i, id := range *l {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}

func (l *idListFlag) Set(s string) error {
	id, err := strconv.ParseUint(s, 0, 16)
	if err != nil || id == 0 || id == 0xFFFF {
		return fmt.Errorf("topic id %q must be a number from 1 to 65534", s)
	}
	*l = append(*l, uint16(id))
	return nil
}
