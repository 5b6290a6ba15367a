//go:build cgo && !nolibyara

package libyara

/*
#cgo LDFLAGS: -lyara
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yara.h>

// Go functions called by libyara (callbacks.go).
extern void goCompilerMessage(int level, char* file, int line, char* msg, uintptr_t h);
extern char* goInclude(char* name, char* calling, char* ns, uintptr_t h);

static void psy_compiler_cb(int level, const char* file, int line, const YR_RULE* rule, const char* msg, void* ud) {
	goCompilerMessage(level, (char*) file, line, (char*) msg, (uintptr_t) ud);
}

static const char* psy_include_cb(const char* name, const char* calling, const char* ns, void* ud) {
	return goInclude((char*) name, (char*) calling, (char*) ns, (uintptr_t) ud);
}

static void psy_include_free(const char* p, void* ud) { free((void*) p); }

static void psy_compiler_callbacks(YR_COMPILER* c, uintptr_t h) {
	yr_compiler_set_callback(c, psy_compiler_cb, (void*) h);
	yr_compiler_set_include_callback(c, psy_include_cb, psy_include_free, (void*) h);
}

// The matches of one scan: the indexes of the matching rules in the rules
// table. A rule matches at most once per scan, so num_rules entries are
// always enough.
typedef struct {
	YR_RULE* table;
	uint32_t* idx;
	uint32_t n, cap;
} psy_matches;

static int psy_collect(YR_SCAN_CONTEXT* ctx, int msg, void* data, void* ud) {
	if (msg == CALLBACK_MSG_RULE_MATCHING) {
		psy_matches* m = ud;
		YR_RULE* r = data;
		if (m->n < m->cap) {
			m->idx[m->n++] = (uint32_t) (r - m->table);
		}
	}
	return CALLBACK_CONTINUE;
}

static psy_matches* psy_scanner_setup(YR_SCANNER* s, YR_RULES* rules) {
	psy_matches* m = calloc(1, sizeof(psy_matches));
	if (m == NULL) {
		return NULL;
	}
	m->cap = rules->num_rules;
	m->idx = calloc(m->cap > 0 ? m->cap : 1, sizeof(uint32_t));
	if (m->idx == NULL) {
		free(m);
		return NULL;
	}
	m->table = rules->rules_table;
	yr_scanner_set_callback(s, psy_collect, m);
	yr_scanner_set_flags(s, SCAN_FLAGS_REPORT_RULES_MATCHING);
	return m;
}

static void psy_matches_free(psy_matches* m) {
	if (m != NULL) {
		free(m->idx);
		free(m);
	}
}

// Saving to and loading from memory.
typedef struct {
	char* data;
	size_t len, cap;
	const char* rd;
	size_t rdleft;
} psy_buf;

static size_t psy_buf_write(const void* p, size_t size, size_t count, void* ud) {
	psy_buf* b = ud;
	size_t n = size * count;
	if (size != 0 && n / size != count) {
		return 0;
	}
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 1 << 16;
		while (cap < b->len + n) {
			cap *= 2;
		}
		char* d = realloc(b->data, cap);
		if (d == NULL) {
			return 0;
		}
		b->data = d;
		b->cap = cap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	return count;
}

static size_t psy_buf_read(void* p, size_t size, size_t count, void* ud) {
	psy_buf* b = ud;
	if (size == 0) {
		return 0;
	}
	size_t whole = b->rdleft / size;
	if (count > whole) {
		count = whole;
	}
	memcpy(p, b->rd, size * count);
	b->rd += size * count;
	b->rdleft -= size * count;
	return count;
}

static int psy_rules_save(YR_RULES* r, psy_buf* b) {
	YR_STREAM s = { .user_data = b, .write = psy_buf_write };
	return yr_rules_save_stream(r, &s);
}

static int psy_rules_load(const char* data, size_t len, YR_RULES** r) {
	psy_buf b = { .rd = data, .rdleft = len };
	YR_STREAM s = { .user_data = &b, .read = psy_buf_read };
	return yr_rules_load_stream(&s, r);
}

// Reading the rules table.
static uint32_t psy_num_rules(YR_RULES* r) { return r->num_rules; }
static YR_RULE* psy_rule(YR_RULES* r, uint32_t i) { return &r->rules_table[i]; }
static const char* psy_rule_identifier(YR_RULE* r) { return r->identifier; }
static const char* psy_rule_namespace(YR_RULE* r) { return r->ns->name; }
static const char* psy_rule_tags(YR_RULE* r) { return r->tags; }
static int32_t psy_rule_flags(YR_RULE* r) { return r->flags; }
static YR_META* psy_rule_metas(YR_RULE* r) { return r->metas; }
static const char* psy_meta_identifier(YR_META* m) { return m->identifier; }
static const char* psy_meta_string(YR_META* m) { return m->string; }
static int psy_meta_last(YR_META* m) { return META_IS_LAST_IN_RULE(m) ? 1 : 0; }
*/
import "C"

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/cgo"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Available reports whether the package was built with libyara.
const Available = true

// Version is the version of libyara the package was built with, such as
// "4.2.3".
func Version() string { return C.YR_VERSION }

// users counts the objects alive (Compilers, Rules): libyara is
// initialized when the first is made and finalized when the last closes.
var users struct {
	sync.Mutex
	n int
}

func acquire() error {
	users.Lock()
	defer users.Unlock()
	if users.n == 0 {
		if code := C.yr_initialize(); code != C.ERROR_SUCCESS {
			return &Error{Op: "yr_initialize", Code: int(code)}
		}
	}
	users.n++
	return nil
}

func release() {
	users.Lock()
	defer users.Unlock()
	users.n--
	if users.n == 0 {
		C.yr_finalize()
	}
}

func fail(op string, code C.int) error {
	if code == C.ERROR_SUCCESS {
		return nil
	}
	return &Error{Op: op, Code: int(code)}
}

// Compiler compiles rules sources into Rules. Define the externals first,
// then add the sources, then take the Rules. A Compiler is used by one
// goroutine at a time; Close it when done.
type Compiler struct {
	c      *C.YR_COMPILER
	handle cgo.Handle

	// Set while libyara compiles (callbacks.go).
	current  string            // the top file being added ("" for a string)
	included map[string]string // include string -> the file it named
	files    []SourceFile
	errs     []Message
	warnings []Message
	failed   bool   // a source did not compile: libyara takes no more
	includeE string // why the last include was refused
}

// NewCompiler returns an empty compiler.
func NewCompiler() (*Compiler, error) {
	if err := acquire(); err != nil {
		return nil, err
	}
	c := &Compiler{included: map[string]string{}}
	if code := C.yr_compiler_create(&c.c); code != C.ERROR_SUCCESS {
		release()
		return nil, fail("yr_compiler_create", code)
	}
	c.handle = cgo.NewHandle(c)
	C.psy_compiler_callbacks(c.c, C.uintptr_t(c.handle))
	return c, nil
}

// Close releases the compiler (not the Rules it returned).
func (c *Compiler) Close() {
	if c.c == nil {
		return
	}
	C.yr_compiler_destroy(c.c)
	c.c = nil
	c.handle.Delete()
	release()
}

// Define declares the external variable name with its default value: an
// int64 (or int), float64, bool or string. Rules may use only the externals
// defined before they are added; scanners may change their values.
func (c *Compiler) Define(name string, value any) error {
	if c.c == nil {
		return ErrClosed
	}
	return define(name, value, "yr_compiler_define_variable", definers{
		integer: func(n *C.char, v C.int64_t) C.int { return C.yr_compiler_define_integer_variable(c.c, n, v) },
		float:   func(n *C.char, v C.double) C.int { return C.yr_compiler_define_float_variable(c.c, n, v) },
		boolean: func(n *C.char, v C.int) C.int { return C.yr_compiler_define_boolean_variable(c.c, n, v) },
		str:     func(n, v *C.char) C.int { return C.yr_compiler_define_string_variable(c.c, n, v) },
	})
}

// definers are one family of libyara's calls that set an external
// variable, by the value's type.
type definers struct {
	integer func(name *C.char, v C.int64_t) C.int
	float   func(name *C.char, v C.double) C.int
	boolean func(name *C.char, v C.int) C.int
	str     func(name, v *C.char) C.int
}

// define sets the external name to value through d; call names the family
// in errors.
func define(name string, value any, call string, d definers) error {
	v, err := External(value)
	if err != nil {
		return err
	}
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var code C.int
	switch x := v.(type) {
	case int64:
		code = d.integer(cname, C.int64_t(x))
	case float64:
		code = d.float(cname, C.double(x))
	case bool:
		code = d.boolean(cname, cbool(x))
	case string:
		cs := C.CString(x)
		defer C.free(unsafe.Pointer(cs))
		code = d.str(cname, cs)
	}
	if code != C.ERROR_SUCCESS {
		return fmt.Errorf("external %q: %w", name, fail(call, code))
	}
	return nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// AddFile compiles the rules file at path into namespace ("" for the
// default one). The file is read once: what is compiled is what Files
// lists with its digest. Errors: *CompileError naming the file (or an
// included one) and line; a file that cannot be read.
func (c *Compiler) AddFile(path, namespace string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return err
	}
	c.files = append(c.files, SourceFile{Path: abs, SHA256: sha256.Sum256(src), Size: len(src)})
	return c.add(abs, src, namespace)
}

// AddString compiles rules given as a string into namespace ("" for the
// default one). Its relative includes are resolved against the working
// directory.
func (c *Compiler) AddString(src, namespace string) error {
	return c.add("", []byte(src), namespace)
}

func (c *Compiler) add(file string, src []byte, namespace string) error {
	switch {
	case c.c == nil:
		return ErrClosed
	case c.failed:
		return errors.New("libyara: the compiler failed already: it takes no more sources")
	}
	if i := slices.Index(src, 0); i >= 0 {
		c.failed = true
		return &CompileError{Errors: []Message{{File: file, Line: 1 + strings.Count(string(src[:i]), "\n"), Text: "a NUL byte in the source"}}}
	}
	csrc := C.CString(string(src))
	defer C.free(unsafe.Pointer(csrc))
	var cns *C.char
	if namespace != "" {
		cns = C.CString(namespace)
		defer C.free(unsafe.Pointer(cns))
	}
	c.current, c.errs = file, nil
	n := C.yr_compiler_add_string(c.c, csrc, cns)
	c.current = ""
	if n == 0 {
		return nil
	}
	c.failed = true
	if len(c.errs) == 0 {
		c.errs = []Message{{File: file, Text: fmt.Sprintf("%d errors", int(n))}}
	}
	return &CompileError{Errors: c.errs}
}

// Files lists every file read so far, top files and included ones, in the
// order read (a file included twice is listed twice).
func (c *Compiler) Files() []SourceFile { return slices.Clone(c.files) }

// Warnings returns the compiler's warnings so far.
func (c *Compiler) Warnings() []Message { return slices.Clone(c.warnings) }

// Rules returns the compiled rules. The compiler takes no more sources
// afterwards; the Rules outlive it.
func (c *Compiler) Rules() (*Rules, error) {
	switch {
	case c.c == nil:
		return nil, ErrClosed
	case c.failed:
		return nil, errors.New("libyara: the compiler failed: no rules")
	}
	if err := acquire(); err != nil {
		return nil, err
	}
	var r *C.YR_RULES
	if code := C.yr_compiler_get_rules(c.c, &r); code != C.ERROR_SUCCESS {
		release()
		return nil, fail("yr_compiler_get_rules", code)
	}
	c.failed = true // libyara refuses more sources once rules were taken
	return newRules(r), nil
}

// Rules are compiled rules, read-only: any number of Scanners may use them
// at once.
type Rules struct {
	// mu is held shared by scans and exclusively by Save (which rewrites
	// the rules' pointers in place while it writes) and Close.
	mu       sync.RWMutex
	r        *C.YR_RULES
	scanners int // open scanners
	poisoned bool
	table    []Rule
}

func newRules(r *C.YR_RULES) *Rules {
	rs := &Rules{r: r}
	n := int(C.psy_num_rules(r))
	rs.table = make([]Rule, n)
	for i := range rs.table {
		rs.table[i] = readRule(C.psy_rule(r, C.uint32_t(i)))
		rs.table[i].Index = i
	}
	return rs
}

// readRule copies a rule's identifier, namespace, tags and metas.
func readRule(cr *C.YR_RULE) Rule {
	flags := C.psy_rule_flags(cr)
	rule := Rule{
		Identifier: C.GoString(C.psy_rule_identifier(cr)),
		Namespace:  C.GoString(C.psy_rule_namespace(cr)),
		Tags:       []string{},
		Global:     flags&C.RULE_FLAGS_GLOBAL != 0,
		Private:    flags&C.RULE_FLAGS_PRIVATE != 0,
	}
	if tags := C.psy_rule_tags(cr); tags != nil {
		for p := tags; *p != 0; {
			tag := C.GoString(p)
			rule.Tags = append(rule.Tags, tag)
			p = (*C.char)(unsafe.Add(unsafe.Pointer(p), len(tag)+1))
		}
	}
	for m := C.psy_rule_metas(cr); m != nil; {
		meta := Meta{Key: C.GoString(C.psy_meta_identifier(m))}
		switch m._type {
		case C.META_TYPE_INTEGER:
			meta.Value = int64(m.integer)
		case C.META_TYPE_BOOLEAN:
			meta.Value = m.integer != 0
		default:
			meta.Value = C.GoString(C.psy_meta_string(m))
		}
		rule.Metas = append(rule.Metas, meta)
		if C.psy_meta_last(m) != 0 {
			break
		}
		m = (*C.YR_META)(unsafe.Add(unsafe.Pointer(m), C.sizeof_YR_META))
	}
	return rule
}

// LoadRules loads rules that Save wrote. libyara does not check such data
// thoroughly: load only bytes you saved yourself, never untrusted ones.
func LoadRules(data []byte) (*Rules, error) {
	if err := acquire(); err != nil {
		return nil, err
	}
	var r *C.YR_RULES
	var p *C.char
	if len(data) > 0 {
		p = (*C.char)(unsafe.Pointer(&data[0]))
	}
	if code := C.psy_rules_load(p, C.size_t(len(data)), &r); code != C.ERROR_SUCCESS {
		release()
		return nil, fail("yr_rules_load_stream", code)
	}
	return newRules(r), nil
}

// Save writes the compiled rules to w, for LoadRules. It is safe while
// scans run (they wait for it: libyara rewrites the rules in place while
// it saves them).
func (r *Rules) Save(w io.Writer) error {
	r.mu.Lock()
	if r.r == nil || r.poisoned {
		r.mu.Unlock()
		return ErrClosed
	}
	var b C.psy_buf
	code := C.psy_rules_save(r.r, &b)
	if code != C.ERROR_SUCCESS {
		// libyara left the rules' pointers rewritten: they are unusable.
		r.poisoned = true
	}
	r.mu.Unlock()
	defer C.free(unsafe.Pointer(b.data))
	if code != C.ERROR_SUCCESS {
		return fail("yr_rules_save_stream", code)
	}
	saved := make([]byte, int(b.len))
	copy(saved, unsafe.Slice((*byte)(unsafe.Pointer(b.data)), int(b.len)))
	_, err := w.Write(saved)
	return err
}

// Len is the number of rules, private ones included.
func (r *Rules) Len() int { return len(r.table) }

// Rules returns every rule in the order compiled. Do not modify them.
func (r *Rules) Rules() []Rule { return r.table }

// Close releases the rules. It fails with ErrInUse while scanners of them
// are open.
func (r *Rules) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil {
		return nil
	}
	if r.scanners > 0 {
		return fmt.Errorf("%w: %d open", ErrInUse, r.scanners)
	}
	C.yr_rules_destroy(r.r)
	r.r = nil
	release()
	return nil
}

// Scanner scans with the Rules it was made from, with its own values of
// the external variables. It is used by one goroutine at a time; Close it
// before the Rules.
type Scanner struct {
	rules   *Rules
	s       *C.YR_SCANNER
	matches *C.psy_matches
}

// NewScanner returns a scanner of the rules, its externals at the values
// the compiler defined.
func (r *Rules) NewScanner() (*Scanner, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.r == nil || r.poisoned {
		return nil, ErrClosed
	}
	s := &Scanner{rules: r}
	if code := C.yr_scanner_create(r.r, &s.s); code != C.ERROR_SUCCESS {
		return nil, fail("yr_scanner_create", code)
	}
	if s.matches = C.psy_scanner_setup(s.s, r.r); s.matches == nil {
		C.yr_scanner_destroy(s.s)
		return nil, &Error{Op: "yr_scanner_create", Code: C.ERROR_INSUFFICIENT_MEMORY}
	}
	r.scanners++
	return s, nil
}

// Close releases the scanner.
func (s *Scanner) Close() {
	if s.s == nil {
		return
	}
	C.yr_scanner_destroy(s.s)
	C.psy_matches_free(s.matches)
	s.s, s.matches = nil, nil
	s.rules.mu.Lock()
	s.rules.scanners--
	s.rules.mu.Unlock()
}

// Define sets the external variable name, which the compiler defined, for
// the scans that follow: an int64 (or int), float64, bool or string.
func (s *Scanner) Define(name string, value any) error {
	if s.s == nil {
		return ErrClosed
	}
	return define(name, value, "yr_scanner_define_variable", definers{
		integer: func(n *C.char, v C.int64_t) C.int { return C.yr_scanner_define_integer_variable(s.s, n, v) },
		float:   func(n *C.char, v C.double) C.int { return C.yr_scanner_define_float_variable(s.s, n, v) },
		boolean: func(n *C.char, v C.int) C.int { return C.yr_scanner_define_boolean_variable(s.s, n, v) },
		str:     func(n, v *C.char) C.int { return C.yr_scanner_define_string_variable(s.s, n, v) },
	})
}

// SetTimeout bounds the scans that follow (libyara counts whole seconds:
// d is rounded up); 0 means no bound. A scan past it fails with an error
// matching ErrTimeout.
func (s *Scanner) SetTimeout(d time.Duration) {
	if s.s == nil {
		return
	}
	secs := int64(0)
	if d > 0 {
		secs = int64((d + time.Second - 1) / time.Second)
	}
	C.yr_scanner_set_timeout(s.s, C.int(min(secs, math.MaxInt32)))
}

// ScanMem scans buf and returns the rules that matched, in rule order.
func (s *Scanner) ScanMem(buf []byte) ([]*Rule, error) {
	return s.scan("yr_scanner_scan_mem", func() C.int {
		var p *C.uint8_t
		if len(buf) > 0 {
			p = (*C.uint8_t)(unsafe.Pointer(&buf[0]))
		}
		return C.yr_scanner_scan_mem(s.s, p, C.size_t(len(buf)))
	})
}

// ScanFile scans the file at path (libyara maps it in memory).
func (s *Scanner) ScanFile(path string) ([]*Rule, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	return s.scan("yr_scanner_scan_file", func() C.int { return C.yr_scanner_scan_file(s.s, cpath) })
}

// ScanFD scans the open file f from its start (libyara maps it in memory).
func (s *Scanner) ScanFD(f *os.File) ([]*Rule, error) {
	fd := f.Fd()
	defer runtime.KeepAlive(f) // f stays open, and fd valid, until the scan returned
	return s.scan("yr_scanner_scan_fd", func() C.int { return C.yr_scanner_scan_fd(s.s, C.int(fd)) })
}

func (s *Scanner) scan(op string, call func() C.int) ([]*Rule, error) {
	if s.s == nil {
		return nil, ErrClosed
	}
	s.rules.mu.RLock()
	defer s.rules.mu.RUnlock()
	s.matches.n = 0
	if code := call(); code != C.ERROR_SUCCESS {
		return nil, fail(op, code)
	}
	n := int(s.matches.n)
	if n == 0 {
		return nil, nil
	}
	idx := unsafe.Slice((*uint32)(unsafe.Pointer(s.matches.idx)), n)
	out := make([]*Rule, n)
	for i, j := range idx {
		out[i] = &s.rules.table[j]
	}
	return out, nil
}
