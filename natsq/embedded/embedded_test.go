package embedded_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/polyswarm/psengine/natsq/embedded"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartErrors(t *testing.T) {
	for name, o := range map[string]embedded.Options{
		"no store":   {},
		"bad listen": {StoreDir: t.TempDir(), Listen: "no-port"},
		"bad port":   {StoreDir: t.TempDir(), Listen: "127.0.0.1:99999"},
	} {
		if _, err := embedded.Start(o); !errors.Is(err, embedded.ErrStart) {
			t.Errorf("%s: %v, want ErrStart", name, err)
		}
	}
}

func TestInProcessAndListening(t *testing.T) {
	quiet, err := embedded.Start(embedded.Options{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer quiet.Shutdown()
	if u := quiet.ClientURL(); u != "" {
		t.Errorf("a server without Listen has URL %q", u)
	}
	nc, err := quiet.Connect()
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()

	var mu sync.Mutex
	var logged []string
	loud, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Listen: "127.0.0.1:0",
		Logf: func(format string, args ...any) { mu.Lock(); logged = append(logged, format); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	defer loud.Shutdown()
	nc, err = nats.Connect(loud.ClientURL())
	if err != nil {
		t.Fatalf("connect over TCP to %s: %v", loud.ClientURL(), err)
	}
	nc.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(logged) == 0 {
		t.Error("Logf received nothing")
	}
}
