package engine_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/clamav/clamd"
	"github.com/polyswarm/psengine/examples/clamav/engine"
	"github.com/polyswarm/psengine/examples/clamav/internal/clamdtest"
	"github.com/polyswarm/psengine/psenginetest"
)

// writeFiles writes data under dir, one file per entry, and returns the paths.
func writeFiles(t *testing.T, dir string, data map[string][]byte) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for name, d := range data {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, d, 0o600); err != nil {
			t.Fatal(err)
		}
		paths[name] = p
	}
	return paths
}

// The engine against a real clamd: every clamav-testfile (packed, archived,
// mailed, OLE: clamd unpacks them to the signed clam.exe), EICAR, a
// hash-signed generated file, a clean file, and the size limit, given as
// local files and as data: URIs (content only in memory). Over the unix
// socket the engine passes descriptors (the local file, or a memory file),
// over TCP it streams; only a stream is bound by StreamMaxLength. Detection
// names are compared with clamscan's on the same database.
func TestRealClamdAnswers(t *testing.T) {
	cfg := clamdtest.StandardSignatures(t)
	generated := randomBytes(5000)
	cfg.Hashes["PsTest.Generated"] = generated
	cfg.StreamMaxLength = "2M"
	cfg.TCP = true
	d := clamdtest.StartDaemon(t, cfg)

	files := writeFiles(t, t.TempDir(), map[string][]byte{
		"eicar.com": psenginetest.EICAR(), "generated.bin": generated,
		"clean.txt": []byte("a clean file\n"), "big.bin": randomBytes(3 << 20),
	})
	testfiles := clamdtest.Testfiles(t)
	if len(testfiles) != 44 {
		t.Errorf("%d files in %s, want 44", len(testfiles), clamdtest.TestfilesDir)
	}
	ref := d.Reference(t, append(slices.Clone(testfiles), files["eicar.com"], files["generated.bin"], files["clean.txt"])...)

	paths := append(slices.Clone(testfiles), files["eicar.com"], files["generated.bin"], files["clean.txt"], files["big.bin"])
	for _, tc := range []struct {
		name   string
		addr   clamd.Address
		inline bool // as data: URIs
	}{{"unix-files", d.Address, false}, {"unix-memory", d.Address, true}, {"tcp", d.TCP, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, engine.Scanner{Address: tc.addr.String()}, psengine.WithWorkers(4))
			inputs := slices.Clone(paths)
			if tc.inline {
				for i, p := range inputs {
					data, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					inputs[i] = psenginetest.DataURI(data)
				}
			}
			for i, res := range e.AnalyzeAll(context.Background(), inputs) {
				path := paths[i]
				a := res.Analysis
				switch name := filepath.Base(path); name {
				case "clean.txt":
					if res.Err != nil || a.Verdict != psengine.Benign {
						t.Errorf("%s: %s (%v), want benign", name, a.Verdict, res.Err)
					}
				case "big.bin": // 3 MiB over a 2M StreamMaxLength
					streamed := tc.addr.Network == "tcp"
					skipped := a.Verdict == psengine.Unknown && slices.Equal(a.Metadata.Comments, []string{psengine.CommentSkipped})
					if res.Err != nil || (streamed && !skipped) || (!streamed && a.Verdict != psengine.Benign) {
						t.Errorf("%s: %+v (%v), want SKIPPED when streamed, else benign", name, a, res.Err)
					}
				default:
					want := ref[path]
					if want == "" {
						t.Fatalf("clamscan does not detect %s on the test database", path)
					}
					if res.Err != nil || a.Verdict != psengine.Malicious || a.Metadata.MalwareFamily != want {
						t.Errorf("%s: %s %q (%v), want malicious %q", path, a.Verdict, a.Metadata.MalwareFamily, res.Err, want)
					}
					if a.Metadata.Scanner.VendorVersion == "" {
						t.Errorf("%s: no vendor_version", path)
					}
				}
			}
		})
	}
	// The names come from the test's own database (clamd decorates them).
	for path, sig := range map[string]string{files["eicar.com"]: clamdtest.EicarSig, testfiles[0]: clamdtest.ClamExeSig} {
		if !strings.HasPrefix(ref[path], sig) {
			t.Errorf("%s reported as %q, not from signature %q", path, ref[path], sig)
		}
	}
}

func TestRealClamdConformance(t *testing.T) {
	// The worker children of the process backend run this test again up
	// to psengine.New: a clamd started there would outlive them. They
	// take the address from the parent's engine setup.
	var addr string
	if !psenginetest.InChild() {
		addr = clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t)).Address.String()
	}
	psenginetest.TestScanner(t, engine.Scanner{Address: addr}, []psenginetest.Case{
		{Name: "eicar", Data: psenginetest.EICAR(), Want: psengine.Malicious},
		{Name: "clean", Data: []byte("clean\n"), Want: psengine.Benign},
	})
}

// clamd restarted between two scans: the worker's kept connection is dead,
// the scan dials again and answers as if nothing happened.
func TestRealClamdRestart(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	var hookErrs []error
	var mu sync.Mutex
	e := newEngine(t, engine.Scanner{Address: d.Address.String()}, psengine.OnError(func(_ context.Context, res psengine.Result) {
		err := res.Err
		mu.Lock()
		hookErrs = append(hookErrs, err)
		mu.Unlock()
	}))
	if res := psenginetest.Analyze(t, e, psenginetest.EICAR()); res.Analysis.Verdict != psengine.Malicious {
		t.Fatalf("before the restart: %s, %v", res.Analysis.Verdict, res.Err)
	}
	d.Kill(t)
	d.Start(t)
	if res := psenginetest.Analyze(t, e, psenginetest.EICAR()); res.Analysis.Verdict != psengine.Malicious || res.Err != nil {
		t.Errorf("after the restart: %s, %v", res.Analysis.Verdict, res.Err)
	}
	if len(hookErrs) != 0 {
		t.Errorf("errors reported for a transparent reconnect: %v", hookErrs)
	}
}

// clamd killed in the middle of a run: the bounties scanned before are
// right, the ones after are answered unknown with an error reported to the
// hooks, nothing hangs; once clamd is back, the same engine answers again.
func TestRealClamdDiesMidRun(t *testing.T) {
	d := clamdtest.StartDaemon(t, clamdtest.StandardSignatures(t))
	clamExe := filepath.Join(clamdtest.TestfilesDir, "clam.exe")
	var inputs []string
	for range 60 {
		inputs = append(inputs, clamExe)
	}
	hookErrs := map[string]error{}
	var mu sync.Mutex
	// Two in flight: the results come back as the scans happen.
	e := newEngine(t, engine.Scanner{Address: d.Address.String()}, psengine.WithWorkers(2), psengine.WithInFlight(2), psengine.OnError(func(_ context.Context, res psengine.Result) {
		b, err := res.Bounty, res.Err
		mu.Lock()
		hookErrs[b.ID.String()] = err
		mu.Unlock()
	}))
	const killAt = 20
	var malicious, unknown int
	i := 0
	for res := range e.AnalyzeEach(context.Background(), psengine.FileArtifact, slices.Values(inputs)) {
		i++
		if i == killAt {
			d.Kill(t)
		}
		switch res.Analysis.Verdict {
		case psengine.Malicious:
			malicious++
			if res.Err != nil {
				t.Errorf("result %d malicious with an error: %v", i, res.Err)
			}
		case psengine.Unknown:
			unknown++
			if i <= killAt {
				t.Errorf("result %d unknown before clamd died: %v", i, res.Err)
			}
			if !errors.Is(res.Err, clamd.ErrUnreachable) && !errors.Is(res.Err, clamd.ErrConnection) {
				t.Errorf("result %d: unknown with error %v, want ErrUnreachable or ErrConnection", i, res.Err)
			}
			mu.Lock()
			herr := hookErrs[res.Bounty.ID.String()]
			mu.Unlock()
			if herr == nil {
				t.Errorf("result %d: no error reported to the hooks", i)
			}
		default:
			t.Errorf("result %d: %s (%v)", i, res.Analysis.Verdict, res.Err)
		}
	}
	// Up to the two workers' scans in flight at the kill may still have made it.
	if malicious < killAt || malicious > killAt+2 || malicious+unknown != len(inputs) {
		t.Errorf("%d malicious, %d unknown of %d; want %d-%d malicious before the kill, the rest unknown",
			malicious, unknown, len(inputs), killAt, killAt+2)
	}
	t.Logf("%d malicious, %d unknown", malicious, unknown)
	d.Start(t)
	if res := psenginetest.Analyze(t, e, psenginetest.EICAR()); res.Analysis.Verdict != psengine.Malicious {
		t.Errorf("after clamd came back: %s, %v", res.Analysis.Verdict, res.Err)
	}
}

// The head and each answer carry clamd's versions from VERSION, with a
// plain database ("ClamAV 1.4.6") and with a versioned container
// ("ClamAV 1.4.6/42/DATE").
func TestRealClamdVersions(t *testing.T) {
	out, err := exec.Command(clamdtest.Need(t, "clamd")[0], "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	wantEngine, _, _ := strings.Cut(strings.Fields(string(out))[1], "/") // "ClamAV 1.4.6[/DB/DATE]"
	for _, cvd := range []int{0, 42} {
		cfg := clamdtest.StandardSignatures(t)
		cfg.CVDVersion = cvd
		d := clamdtest.StartDaemon(t, cfg)
		e := newEngine(t, engine.Scanner{Address: d.Address.String()})
		wantSigs := ""
		if cvd != 0 {
			wantSigs = strconv.Itoa(cvd)
		}
		if err := e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if s := e.Env().Head().Scanner; s.VendorVersion != wantEngine || s.SignaturesVersion != wantSigs {
			t.Errorf("cvd %d: head %+v, want vendor_version %q, signatures_version %q", cvd, s, wantEngine, wantSigs)
		}
		res := psenginetest.Analyze(t, e, psenginetest.EICAR())
		if s := res.Analysis.Metadata.Scanner; res.Analysis.Verdict != psengine.Malicious || s.VendorVersion != wantEngine || s.SignaturesVersion != wantSigs {
			t.Errorf("cvd %d: answer %s with %+v", cvd, res.Analysis.Verdict, s)
		}
		info, err := e.Command(context.Background(), "info", nil)
		if err != nil {
			t.Fatal(err)
		}
		if i := info.(engine.Info); i.SignaturesVersion != wantSigs || (cvd != 0) != (i.SignaturesDate != "") {
			t.Errorf("cvd %d: info %+v", cvd, i)
		}
	}
}
