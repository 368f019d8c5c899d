package main

import (
	"fmt"
	"slices"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

// median is the middle sample (the lower middle for an even count, which
// is what nearest rank gives; with 100 samples the difference is noise).
func median(ds []time.Duration) time.Duration { return benchutil.Median(ds) }
func p90(ds []time.Duration) time.Duration    { return benchutil.Quantile(ds, 0.9) }

func minMax(ds []time.Duration) (time.Duration, time.Duration) {
	if len(ds) == 0 {
		return 0, 0
	}
	return slices.Min(ds), slices.Max(ds)
}

// ms formats a duration in milliseconds with a precision that suits it.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	switch {
	case f >= 1000:
		return fmt.Sprintf("%.0f ms", f)
	case f >= 100:
		return fmt.Sprintf("%.1f ms", f)
	default:
		return fmt.Sprintf("%.2f ms", f)
	}
}
