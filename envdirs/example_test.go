package envdirs_test

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/polyswarm/psengine/envdirs"
)

func ExampleResolve() {
	env := map[string]string{
		"PSENGINE_HOME":        "/opt/clam",
		"PSENGINE_RUNTIME_DIR": "/run/clam",
		"PSENGINE_SCANNER":     "clamscan",
		"PSENGINE_UPDATER":     "/usr/bin/freshclam",
		"TMPDIR":               "/var/tmp",
	}
	d, warnings, err := envdirs.Resolve("clam", func(k string) string { return env[k] })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("config: ", d.Config)
	fmt.Println("secrets:", d.Secrets)
	fmt.Println("runtime:", d.Runtime)
	fmt.Println("scanner:", d.Scanner)
	fmt.Println("updater:", d.Updater)
	fmt.Println("scratch:", d.Temp, d.TempPrefix)
	fmt.Println("warnings:", len(warnings))
	// Output:
	// config:  /opt/clam/etc
	// secrets: /opt/clam/secrets
	// runtime: /run/clam
	// scanner: /opt/clam/bin/clamscan
	// updater: /usr/bin/freshclam
	// scratch: /var/tmp clam-
	// warnings: 0
}

func ExampleResolve_xdg() {
	env := map[string]string{"HOME": "/home/ana", "XDG_CACHE_HOME": "/fast/cache"}
	d, warnings, err := envdirs.Resolve("yara", func(k string) string { return env[k] })
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Home)
	fmt.Println(d.Bin)
	fmt.Println(d.Config)
	fmt.Println(d.Cache)
	fmt.Println(d.State)
	fmt.Println(len(warnings), "warning (no XDG_RUNTIME_DIR): runtime under", filepath.Dir(d.Runtime))
	// Output:
	// /home/ana/.local/share/yara
	// /home/ana/.local/share/yara/bin
	// /home/ana/.config/yara
	// /fast/cache/yara
	// /home/ana/.local/state/yara
	// 1 warning (no XDG_RUNTIME_DIR): runtime under /tmp
}

func ExampleDirs_LogValue() {
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	d := envdirs.Dirs{Home: "/opt/clam", Data: "/opt/clam/share", Runtime: "/run/clam"}
	log.Info("engine directories", "dirs", d)
	// Output:
	// level=INFO msg="engine directories" dirs.home=/opt/clam dirs.data=/opt/clam/share dirs.runtime=/run/clam
}
