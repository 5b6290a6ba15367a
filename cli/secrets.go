package cli

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/polyswarm/psengine/envdirs"
)

// secretEnv are the environment variables webhook takes its secret from,
// in order, when neither --secret nor --secret-file is given.
var secretEnv = []string{"PSENGINE_WEBHOOK_SECRET", "WEBHOOK_SECRET"}

// webhookSecret returns the webhook secret: --secret (flagValue), or the
// content of --secret-file (file, which must be private as
// envdirs.ReadSecretFile says, its trailing newline removed), or the first
// of secretEnv set; "" when there is none. Both flags at once are a usage
// error.
func (p *Program) webhookSecret(flagValue, file string) (string, error) {
	switch {
	case flagValue != "" && file != "":
		return "", usageError{"give --secret or --secret-file, not both"}
	case flagValue != "":
		return flagValue, nil
	case file != "":
		b, err := envdirs.ReadSecretFile(file)
		if err != nil {
			return "", fmt.Errorf("--secret-file: %w", err)
		}
		return string(b), nil
	}
	for _, name := range secretEnv {
		if s := p.Getenv(name); s != "" {
			return s, nil
		}
	}
	return "", nil
}

// checkDirs is run before an engine serves (webhook with --backend local
// or process, worker): it creates the engine's runtime directory when
// missing (mode 0700) and refuses to go on, naming the path and the fix,
// when that directory or the secrets directory (or a file in it) is open
// to other users (envdirs.Dirs.Check), as ssh refuses a key others can
// read. The directories are those the environment gives (p.Getenv).
func (p *Program) checkDirs() error {
	dirs, _, err := envdirs.Resolve(p.Name, p.Getenv)
	if err != nil {
		return fmt.Errorf("the engine's directories: %w", err)
	}
	if err := (envdirs.Dirs{Runtime: dirs.Runtime}).Ensure(); err != nil {
		return err
	}
	if err := dirs.Check(); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	return nil
}

// loopbackDefault gives a listen address without a host (":9090") the
// loopback host: a listener serves other machines only when its address
// says so ("0.0.0.0:9090", "[::]:9090"). Other addresses are returned as
// they are.
func loopbackDefault(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host != "" {
		return addr
	}
	return net.JoinHostPort("127.0.0.1", port)
}

// everyInterface reports whether host ("0.0.0.0", "::") listens on every
// interface.
func everyInterface(host string) bool {
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}
