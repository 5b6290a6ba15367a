//go:build unix

package engine_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/winescan/engine"
	"github.com/polyswarm/psengine/examples/winescan/internal/winetest"
	"github.com/polyswarm/psengine/winex"
)

// Readiness is a usable prefix: present, owned by us, initialised. No Wine
// program runs for it, so a prefix of the test's own making will do (Wine
// must be installed: the scanner finds it first).
func TestCheckHealth(t *testing.T) {
	_, err := winex.Discover(os.Getenv)
	winetest.Need(t, err)
	ctx := context.Background()
	prefix := filepath.Join(t.TempDir(), "prefix")
	s := engine.Scanner{Getenv: getenv("WINEPREFIX", prefix)}
	check := func() error { return s.CheckHealth(ctx, psengine.Env{}) }

	if err := check(); !errors.Is(err, winex.ErrPrefix) || !strings.Contains(err.Error(), prefix) {
		t.Errorf("no prefix: %v, want ErrPrefix naming it", err)
	}
	if err := os.Mkdir(prefix, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := check(); !errors.Is(err, winex.ErrPrefix) || !strings.Contains(err.Error(), "system.reg") {
		t.Errorf("prefix not initialised: %v, want ErrPrefix naming system.reg", err)
	}
	reg := filepath.Join(prefix, "system.reg")
	if err := os.WriteFile(reg, []byte("WINE REGISTRY Version 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := check(); err != nil {
		t.Errorf("an initialised prefix of ours: %v", err)
	}
	if os.Getuid() == 0 { // only root can give it away
		if err := os.Chown(reg, 4242, 4242); err != nil {
			t.Fatal(err)
		}
		if err := check(); !errors.Is(err, winex.ErrPrefix) || !strings.Contains(err.Error(), "uid 4242") {
			t.Errorf("system.reg owned by another user: %v, want ErrPrefix", err)
		}
	}
}

// An engine on the real test prefix is ready.
func TestReadyOnTheTestPrefix(t *testing.T) {
	e, _ := startEngine(t, scannerFor(needPrefix(t))) // shut down at the end
	if err := e.Ready(context.Background()); err != nil {
		t.Errorf("Ready: %v", err)
	}
}
