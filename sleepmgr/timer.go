package sleepmgr

import (
	"math"
	"time"
)

// toleranceThreshold is where the supervision tolerance changes from +50% to
// +10% (§7.2: "10% higher than the indicated values for durations larger than
// 1 minute, and 50% higher if less").
const toleranceThreshold = time.Minute

// Tolerance returns the grace added to a keep-alive or sleep duration d
// before the client is considered lost: d/2 for d < 60s, d/10 for d >= 60s,
// and 0 for d <= 0.
func Tolerance(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 0
	case d < toleranceThreshold:
		return d / 2
	default:
		return d / 10
	}
}

// Deadline returns the instant after which a client supervised with duration
// d (keep-alive or sleep), last heard from at now, is lost: now + d +
// Tolerance(d). d <= 0 means no supervision and yields the zero time.Time
// (check with IsZero).
func Deadline(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	t := Tolerance(d)
	if d > math.MaxInt64-t { // saturate rather than wrap
		return now.Add(math.MaxInt64)
	}
	return now.Add(d + t)
}
