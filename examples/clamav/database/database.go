// Package database reads a ClamAV signature database directory (clamd's
// DatabaseDirectory) to tell whether it changed, which version clamd will
// report once it loads it, and whether ClamAV can load it at all.
//
// clamd reloads in the background and reports neither the end of a reload
// nor its failure (a database that does not load leaves the previous one
// scanning, and a line in its log): an updater that wants the truth reads
// the directory itself. Read takes a Snapshot (each database file's size,
// modification time and SHA-256, and the version of the daily database),
// Snapshot.Changed lists what differs from an earlier one, and Check loads
// files with clamscan, which fails on a database clamd would refuse.
package database

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ErrRejected is wrapped by the error of Check when ClamAV cannot load a
// database file.
var ErrRejected = errors.New("clamav database rejected")

// extensions are the file extensions ClamAV loads from a database
// directory (other files, such as freshclam.dat, are not databases).
var extensions = map[string]bool{
	".cvd": true, ".cld": true, ".cud": true, ".cdb": true, ".cfg": true, ".crb": true, ".cat": true,
	".ftm": true, ".gdb": true, ".hdb": true, ".hdu": true, ".hsb": true, ".hsu": true, ".idb": true,
	".ign": true, ".ign2": true, ".imp": true, ".info": true, ".ldb": true, ".ldu": true, ".mdb": true,
	".mdu": true, ".msb": true, ".msu": true, ".ndb": true, ".ndu": true, ".pdb": true, ".pwdb": true,
	".sfp": true, ".fp": true, ".wdb": true, ".yar": true, ".yara": true, ".ioc": true, ".sign": true,
}

// IsDatabase reports whether ClamAV loads a file of this name from its
// database directory.
func IsDatabase(name string) bool {
	return extensions[strings.ToLower(filepath.Ext(name))] && !strings.HasPrefix(name, ".")
}

// File is one database file as a Snapshot saw it.
type File struct {
	Name    string // base name in the directory
	Size    int64
	ModTime time.Time
	SHA256  string // lowercase hex of the content
}

// Snapshot is the state of a database directory.
type Snapshot struct {
	Dir   string
	Files []File // sorted by name
	// Version is the version of the daily database (daily.cvd, .cld or
	// .cud; the highest when there are several), which clamd's VERSION
	// reports once it loaded it; "" when there is none.
	Version string
}

// Digest is one SHA-256 over every file's name and content: equal digests,
// the same databases.
func (s Snapshot) Digest() string {
	h := sha256.New()
	for _, f := range s.Files {
		fmt.Fprintf(h, "%s\x00%s\x00", f.Name, f.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Changed returns the paths of the files that are new or differ from
// prev (files removed since are not listed: there is nothing to load).
func (s Snapshot) Changed(prev Snapshot) []string {
	old := make(map[string]string, len(prev.Files))
	for _, f := range prev.Files {
		old[f.Name] = f.SHA256
	}
	var changed []string
	for _, f := range s.Files {
		if old[f.Name] != f.SHA256 {
			changed = append(changed, filepath.Join(s.Dir, f.Name))
		}
	}
	return changed
}

// Read takes a snapshot of the database files in dir. A file whose size
// and modification time are those prev recorded keeps prev's SHA-256
// instead of being read again (prev may be the zero Snapshot). It fails
// when dir cannot be read, or holds no database file.
func Read(dir string, prev Snapshot) (Snapshot, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return Snapshot{}, fmt.Errorf("clamav database: %w", err)
	}
	known := make(map[string]File, len(prev.Files))
	if prev.Dir == dir {
		for _, f := range prev.Files {
			known[f.Name] = f
		}
	}
	s := Snapshot{Dir: dir}
	var best int64 = -1
	for _, e := range entries {
		if !IsDatabase(e.Name()) {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) { // removed meanwhile
				continue
			}
			return Snapshot{}, fmt.Errorf("clamav database: %w", err)
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		f := File{Name: e.Name(), Size: fi.Size(), ModTime: fi.ModTime()}
		if k, ok := known[f.Name]; ok && k.Size == f.Size && k.ModTime.Equal(f.ModTime) {
			f.SHA256 = k.SHA256
		} else if f.SHA256, err = hashFile(filepath.Join(dir, f.Name)); err != nil {
			return Snapshot{}, err
		}
		s.Files = append(s.Files, f)
		if isDaily(f.Name) {
			if v, err := fileVersion(filepath.Join(dir, f.Name)); err == nil && v > best {
				best = v
			}
		}
	}
	if len(s.Files) == 0 {
		return Snapshot{}, fmt.Errorf("clamav database: no database file in %s", dir)
	}
	slices.SortFunc(s.Files, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	if best >= 0 {
		s.Version = strconv.FormatInt(best, 10)
	}
	return s, nil
}

func isDaily(name string) bool {
	switch strings.ToLower(name) {
	case "daily.cvd", "daily.cld", "daily.cud":
		return true
	}
	return false
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("clamav database: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("clamav database: reading %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// HeaderSize is the size of a CVD header (.cvd, .cld and .cud files).
const HeaderSize = 512

func fileVersion(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, HeaderSize)
	if _, err := io.ReadFull(f, head); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	h, err := ParseHeader(head)
	return h.Version, err
}

// Header is the start of a CVD container:
// "ClamAV-VDB:TIME:VERSION:SIGNATURES:LEVEL:MD5:DSIG:BUILDER:STIME",
// padded with spaces to 512 bytes.
type Header struct {
	Time       string // build time as written, such as "06 Dec 2026 23-51 +0000"
	Version    int64
	Signatures int64
	Builder    string
}

// ParseHeader parses a CVD header (its first 512 bytes, or fewer). Bytes
// that are not such a header give an error.
func ParseHeader(b []byte) (Header, error) {
	b = b[:min(len(b), HeaderSize)]
	b = bytes.TrimRight(b, " \x00")
	rest, ok := bytes.CutPrefix(b, []byte("ClamAV-VDB:"))
	if !ok {
		return Header{}, errors.New("clamav database: not a CVD header")
	}
	fields := strings.Split(string(rest), ":")
	if len(fields) < 2 {
		return Header{}, errors.New("clamav database: CVD header without a version")
	}
	v, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil || v < 0 {
		return Header{}, fmt.Errorf("clamav database: CVD version %.32q is not a number", fields[1])
	}
	h := Header{Time: fields[0], Version: v}
	if len(fields) > 2 {
		h.Signatures, _ = strconv.ParseInt(fields[2], 10, 64)
	}
	if len(fields) > 6 {
		h.Builder = fields[6]
	}
	return h, nil
}

// Check loads the database files with clamscan (program; "" finds
// clamscan on PATH) and scans nothing: ClamAV fails on a database clamd
// would refuse. The error wraps ErrRejected and quotes clamscan's reason
// (which names the file), or says why clamscan could not run (wrapping
// exec.ErrNotFound when it is not installed). ctx ends the check (and
// clamscan).
func Check(ctx context.Context, program string, files []string) error {
	if len(files) == 0 {
		return nil
	}
	if program == "" {
		p, err := exec.LookPath("clamscan")
		if err != nil {
			return fmt.Errorf("clamav database: cannot check it: %w", err)
		}
		program = p
	}
	args := []string{"--no-summary"}
	for _, f := range files {
		args = append(args, "--database="+f)
	}
	args = append(args, "-") // scans its empty stdin
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("clamav database: checking: %w", context.Cause(ctx))
	}
	if _, ok := errors.AsType[*exec.ExitError](err); !ok {
		return fmt.Errorf("clamav database: running clamscan: %w", err)
	}
	return fmt.Errorf("%w: %s", ErrRejected, reason(out, files))
}

// reason picks clamscan's lines that say what failed ("Can't load FILE:
// Malformed database"), or names the files checked when none does.
func reason(out []byte, files []string) string {
	var why []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if strings.Contains(line, "Can't load") || strings.Contains(line, "Can't open") {
			why = append(why, strings.TrimPrefix(line, "LibClamAV Error: "))
		}
	}
	if len(why) == 0 {
		last := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		return fmt.Sprintf("clamscan cannot load %s: %.200s", strings.Join(files, ", "), last)
	}
	return strings.Join(why, "; ")
}
