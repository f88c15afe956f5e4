package cli

import (
	"flag"
	"strings"
	"testing"
)

func TestServerNameFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // error text; "" for none
	}{
		{[]string{"--server-name", "gateway.example"}, "need --dtls"},
		{[]string{"--dtls", "--server-name", "gateway.example"}, ""},
		{[]string{"--dtls", "--server-name", "gateway.example", "--cafile", "ca.pem"}, ""},
		{[]string{"--dtls", "--server-name", "gw", "--psk-identity", "a", "--psk", "00"}, "--psk cannot be combined"},
		{[]string{"--dtls", "--server-name", "gw", "--insecure"}, "--server-name is useless"},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		var f DTLSFlags
		f.Register(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		_, err := f.Dial()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
