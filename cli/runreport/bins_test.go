package runreport

import (
	"slices"
	"testing"
)

func TestTimeBins(t *testing.T) {
	edges, counts := timeBins([]float64{0.0012, 0.0019, 0.002, 0.0049, 0.05, 0.3, 2.5})
	labels := make([]string, len(edges))
	for i, e := range edges {
		labels[i] = formatSeconds(e)
	}
	want := []string{"1ms", "2ms", "5ms", "10ms", "20ms", "50ms", "100ms", "200ms", "500ms", "1s", "2s", "5s"}
	if !slices.Equal(labels, want) {
		t.Errorf("edges %q, want %q", labels, want)
	}
	if want := []int{2, 2, 0, 0, 0, 1, 0, 1, 0, 0, 1}; !slices.Equal(counts, want) {
		t.Errorf("counts %v, want %v", counts, want)
	}
	// One time alone: one bin.
	if edges, counts := timeBins([]float64{0.7}); len(counts) != 1 || counts[0] != 1 || edges[0] > 0.7 || edges[1] <= 0.7 {
		t.Errorf("one time: edges %v, counts %v", edges, counts)
	}
}

func TestFormatSeconds(t *testing.T) {
	for s, want := range map[float64]string{0.00085: "850µs", 0.0125: "12.5ms", 0.2: "200ms", 3.2: "3.2s", 125: "2m05s"} {
		if got := formatSeconds(s); got != want {
			t.Errorf("formatSeconds(%v) = %q, want %q", s, got, want)
		}
	}
}
