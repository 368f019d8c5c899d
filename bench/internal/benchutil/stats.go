package benchutil

import (
	"cmp"
	"slices"
)

// Quantile returns the q-quantile (0 < q <= 1) of v by nearest rank: the
// smallest sample with at least q of the samples at or below it; 0 for no
// samples.
func Quantile[T cmp.Ordered](v []T, q float64) T {
	var zero T
	if len(v) == 0 {
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	// nearest rank: ceil(q*n), 1-based
	r := int(q*float64(len(s)) + 0.999999)
	if r < 1 {
		r = 1
	}
	if r > len(s) {
		r = len(s)
	}
	return s[r-1]
}

// Median is the middle sample, the lower middle for an even count (which
// is what nearest rank gives: Median(v) == Quantile(v, 0.5)); 0 for no
// samples.
func Median[T cmp.Ordered](v []T) T {
	var zero T
	if len(v) == 0 {
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
