package engine

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/yara/libyara"
)

// Scores of the answer policy (see the package doc).
const (
	// DefaultScore is the score of a match whose rule has no usable
	// `score` meta.
	DefaultScore = 75
	// MaliciousScore is the least score of a detection that makes an
	// artifact malicious.
	MaliciousScore = 70
	// SuspiciousScore is the least score of a detection that makes an
	// artifact suspicious; below it a match is informational.
	SuspiciousScore = 40
)

// DefaultInfoTags are the tags (and rule names) of informational rules
// when Scanner.InfoTags is nil: the conventional ones, and PECheck, the
// tag of the file-format rules of the public YARA-Rules set (IsPE32,
// IsDLL, HasDebugData...).
var DefaultInfoTags = []string{"info", "informational", "PECheck"}

// ReportBudget bounds metadata "yara" of an answer, in bytes of JSON: the
// answer PolySwarm takes is at most psengine.MaxAnswerSize, and the rest
// of the answer (head, verdict, bid...) needs the difference.
const ReportBudget = psengine.MaxAnswerSize - 8<<10

// maxMetaString bounds each meta string reported, in bytes.
const maxMetaString = 512

// Policy turns a scan's matches into an analysis.
type Policy struct {
	NoMatch  psengine.Verdict // Unknown or Benign
	InfoTags []string         // lowercase
}

// policy checks the scanner's settings.
func (s Scanner) policy() (Policy, error) {
	p := Policy{NoMatch: s.NoMatch}
	switch p.NoMatch {
	case "":
		p.NoMatch = psengine.Unknown
	case psengine.Unknown, psengine.Benign:
	default:
		return Policy{}, fmt.Errorf("%w: NoMatch %q: want unknown or benign", ErrConfig, s.NoMatch)
	}
	tags := s.InfoTags
	if tags == nil {
		tags = DefaultInfoTags
	}
	for _, t := range tags {
		if t = strings.ToLower(strings.TrimSpace(t)); t != "" && !slices.Contains(p.InfoTags, t) {
			p.InfoTags = append(p.InfoTags, t)
		}
	}
	return p, nil
}

// Match is a rule that matched, as answers and the scan_file command
// report it.
type Match struct {
	Rule      string   `json:"name"`
	Namespace string   `json:"namespace,omitempty"` // "" for the default namespace
	Tags      []string `json:"tags"`
	// Meta holds the rule's metadata: string, int64 or bool values (the
	// first of a repeated key; strings made UTF-8 and cut at 512 bytes).
	Meta  map[string]any `json:"meta"`
	Score int            `json:"score"`          // the `score` meta, else DefaultScore
	Info  bool           `json:"info,omitempty"` // informational: never a verdict
}

// match is how the policy reports rule r.
func (p Policy) match(r libyara.Rule) Match {
	m := Match{Rule: r.Identifier, Tags: r.Tags, Meta: make(map[string]any, len(r.Metas)), Score: DefaultScore}
	if m.Tags == nil {
		m.Tags = []string{}
	}
	if r.Namespace != "default" {
		m.Namespace = r.Namespace
	}
	for _, meta := range r.Metas {
		if _, dup := m.Meta[meta.Key]; dup {
			continue
		}
		v := meta.Value
		if s, ok := v.(string); ok {
			v = cut(strings.ToValidUTF8(s, "\uFFFD"), maxMetaString)
		}
		m.Meta[meta.Key] = v
	}
	if score, ok := scoreOf(m.Meta["score"]); ok {
		m.Score = score
	}
	m.Info = m.Score < SuspiciousScore || slices.Contains(p.InfoTags, strings.ToLower(r.Identifier))
	for _, t := range r.Tags {
		m.Info = m.Info || slices.Contains(p.InfoTags, strings.ToLower(t))
	}
	return m
}

// scoreOf reads a `score` meta: an integer, or a string holding one, from
// 0 to 100.
func scoreOf(v any) (int, bool) {
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64); err != nil {
			return 0, false
		}
	default:
		return 0, false
	}
	if n < 0 || n > 100 {
		return 0, false
	}
	return int(n), true
}

// cut shortens s to at most max bytes, on a rune boundary, marking the cut.
func cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = "…"
	s = s[:max-len(mark)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + mark
}

// Report is metadata "yara" of an answer.
type Report struct {
	Count     int     `json:"count"` // every rule that matched
	Rules     []Match `json:"rules"` // the best of them that fit, detections first
	Truncated bool    `json:"truncated,omitempty"`
}

// Classify turns a scan's matches, in rule order, into an analysis (see
// the package doc).
func (p Policy) Classify(matches []Match) psengine.Analysis {
	var a psengine.Analysis
	best := -1
	for i, m := range matches {
		if !m.Info && (best < 0 || m.Score > matches[best].Score) {
			best = i
		}
	}
	switch {
	case best >= 0 && matches[best].Score >= MaliciousScore:
		a.Verdict = psengine.Malicious
	case best >= 0:
		a.Verdict = psengine.Suspicious
	case p.NoMatch == psengine.Benign:
		a.Verdict, a.Confidence = psengine.Benign, NoMatchConfidence
	default:
		a.Verdict = psengine.Unknown
	}
	if best >= 0 {
		a.Score = float64(matches[best].Score)
		a.Metadata.MalwareFamily = matches[best].Rule
	}
	if len(matches) > 0 {
		a.Metadata.Extra = map[string]any{"yara": NewReport(matches, ReportBudget)}
	}
	return a
}

// NewReport reports matches (in rule order) in at most budget bytes of
// JSON: detections first, best score first, then in rule order, as many as
// fit.
func NewReport(matches []Match, budget int) Report {
	sorted := slices.Clone(matches)
	slices.SortStableFunc(sorted, func(a, b Match) int {
		switch {
		case a.Info != b.Info:
			if a.Info {
				return 1
			}
			return -1
		case a.Score != b.Score:
			return b.Score - a.Score
		}
		return 0
	})
	r := Report{Count: len(matches), Rules: []Match{}}
	// {"count":N,"rules":[...],"truncated":true}
	size := len(`{"count":,"rules":[],"truncated":true}`) + len(strconv.Itoa(len(matches)))
	for _, m := range sorted {
		data, err := json.Marshal(m)
		if err != nil { // cannot happen: strings, numbers and bools only
			r.Truncated = true
			continue
		}
		n := len(data)
		if len(r.Rules) > 0 {
			n++ // the comma
		}
		if size+n > budget {
			r.Truncated = true
			break
		}
		size += n
		r.Rules = append(r.Rules, m)
	}
	return r
}
