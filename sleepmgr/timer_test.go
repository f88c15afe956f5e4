package sleepmgr

import (
	"math"
	"testing"
	"time"
)

func TestTolerance(t *testing.T) {
	tests := []struct {
		d, want time.Duration
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Second, 500 * time.Millisecond},
		{10 * time.Second, 5 * time.Second},
		{59 * time.Second, 29500 * time.Millisecond},
		{time.Minute - time.Nanosecond, (time.Minute - time.Nanosecond) / 2},
		{60 * time.Second, 6 * time.Second},
		{61 * time.Second, 6100 * time.Millisecond},
		{time.Hour, 6 * time.Minute},
		{65535 * time.Second, 6553500 * time.Millisecond}, // largest wire Duration
	}
	for _, tt := range tests {
		if got := Tolerance(tt.d); got != tt.want {
			t.Errorf("Tolerance(%v) = %v, want %v", tt.d, got, tt.want)
		}
	}
}

func TestDeadline(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		d     time.Duration
		after time.Duration // deadline - now; 0 means zero time
	}{
		{0, 0},
		{-5 * time.Second, 0},
		{10 * time.Second, 15 * time.Second},
		{59 * time.Second, 88500 * time.Millisecond},
		{60 * time.Second, 66 * time.Second},
		{15 * time.Minute, 16*time.Minute + 30*time.Second},
	}
	for _, tt := range tests {
		got := Deadline(now, tt.d)
		if tt.after == 0 {
			if !got.IsZero() {
				t.Errorf("Deadline(now, %v) = %v, want zero time", tt.d, got)
			}
			continue
		}
		if diff := got.Sub(now); diff != tt.after {
			t.Errorf("Deadline(now, %v) = now+%v, want now+%v", tt.d, diff, tt.after)
		}
	}
}

func TestDeadlineSaturates(t *testing.T) {
	now := time.Unix(0, 0)
	got := Deadline(now, math.MaxInt64)
	if !got.After(now) {
		t.Fatalf("Deadline with huge d = %v, not after now", got)
	}
}
