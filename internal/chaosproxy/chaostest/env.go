package chaostest

import (
	"os"
	"strconv"
	"time"
)

// Duration is how long a chaos test injects faults: WSHUB_CHAOS_DURATION
// (a Go duration) or 10 s. A malformed value is an error.
func Duration() (time.Duration, error) {
	if s := os.Getenv("WSHUB_CHAOS_DURATION"); s != "" {
		return time.ParseDuration(s)
	}
	return 10 * time.Second, nil
}

// Seed is WSHUB_CHAOS_SEED or 1: the choices of recipients and of faults
// (not their timing, which the scheduler decides). A malformed value is an
// error.
func Seed() (uint64, error) {
	if s := os.Getenv("WSHUB_CHAOS_SEED"); s != "" {
		return strconv.ParseUint(s, 10, 64)
	}
	return 1, nil
}
