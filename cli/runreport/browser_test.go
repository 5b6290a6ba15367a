//go:build linux

package runreport_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/polyswarm/psengine/cli/runrecord"
	"github.com/polyswarm/psengine/cli/runreport"
)

// chromiumFlags keep a headless Chromium off the network and quick to
// start: no first-run work, no updates, no sync, no crash reports.
var chromiumFlags = []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
	"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-crash-reporter",
	"--hide-scrollbars", "--force-device-scale-factor=1"}

// needChromium returns Chromium's path; without it the test skips, or
// fails under CI=true (.ci/run installs it).
func needChromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is needed (apt-get install chromium): %v", err)
		}
		t.Skipf("chromium is needed (apt-get install chromium): %v", err)
	}
	return path
}

// render opens page in headless Chromium once, 1280x2000, and returns its
// DOM as Chromium parsed it and its screenshot. Chromium runs in a
// process group of its own, killed whole when it is done or the test
// times out.
func render(t *testing.T, chromium, page string) (dom string, shot image.Image) {
	t.Helper()
	dir := t.TempDir()
	shotFile := filepath.Join(dir, "shot.png")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	args := append(chromiumFlags, "--user-data-dir="+filepath.Join(dir, "profile"), "--window-size=1280,2000",
		"--screenshot="+shotFile, "--dump-dom", "file://"+page)
	cmd := exec.CommandContext(ctx, chromium, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // what it left behind, if anything
	}
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.Bytes())
	}
	f, err := os.Open(shotFile)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, stderr.Bytes())
	}
	defer f.Close()
	shot, err = png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), shot
}

// countColors counts the screenshot's pixels of each color ("#rrggbb").
func countColors(img image.Image, colors []string) map[string]int {
	want := map[[3]uint8]string{}
	for _, c := range colors {
		var rgb [3]uint8
		fmt.Sscanf(c, "#%02x%02x%02x", &rgb[0], &rgb[1], &rgb[2])
		want[rgb] = c
	}
	got := map[string]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if c, ok := want[[3]uint8{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8)}]; ok {
				got[c]++
			}
		}
	}
	return got
}

// The report of a synthetic run, opened in a real browser: its DOM has
// each chart as an SVG with its bars, and the screenshot shows each
// chart's bars drawn (every chart has colors of its own: each is found in
// the picture over a bar's worth of pixels).
func TestReportInBrowser(t *testing.T) {
	chromium := needChromium(t)
	run, err := runrecord.Read(bytes.NewReader(syntheticRecord(t, 300)))
	if err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(t.TempDir(), "run.html")
	f, err := os.Create(page)
	if err != nil {
		t.Fatal(err)
	}
	if err := runreport.WriteReport(f, run, "run.json"); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	dom, shot := render(t, chromium, page)

	for _, id := range []string{"chart-verdicts", "chart-confidence", "chart-times", "chart-errors", "chart-families"} {
		start := strings.Index(dom, `<svg id="`+id+`"`)
		if start < 0 {
			t.Errorf("the DOM has no svg %s", id)
			continue
		}
		svg := dom[start:]
		svg = svg[:strings.Index(svg, "</svg>")]
		if n := strings.Count(svg, "<rect "); n < 3 {
			t.Errorf("svg %s has %d bars", id, n)
		}
	}

	if b := shot.Bounds(); b.Dx() != 1280 || b.Dy() != 2000 {
		t.Fatalf("screenshot of %v, want 1280x2000", b.Size())
	}
	charts := map[string][]string{
		"verdicts":   {"#c0392b", "#e67e22", "#27ae60", "#95a5a6", "#34495e"},
		"confidence": {"#2e86de"},
		"times":      {"#8e44ad"},
		"errors":     {"#b7950b"},
		"families":   {"#16a085"},
	}
	var all []string
	for _, colors := range charts {
		all = append(all, colors...)
	}
	got := countColors(shot, all)
	for chart, colors := range charts {
		for _, c := range colors {
			// The smallest bar of a chart is 2 px wide and 18 high.
			if got[c] < 36 {
				t.Errorf("chart %s: %d pixels of %s in the screenshot: not drawn", chart, got[c], c)
			}
		}
	}
	t.Logf("pixels by color: %v", got)
}
