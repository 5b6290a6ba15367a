package winex

import "regexp"

// Fields returns the named groups of re's first match in s, name -> value, or
// nil when re does not match. Only groups that took part in the match are
// present, so `v, ok := m["version"]` tells an empty capture from an absent
// one. When several groups share a name (Go allows it, handy in alternations
// such as `(?P<name>\S+) FOUND|Infected: (?P<name>\S+)`), the first that took
// part wins. Unnamed groups are ignored. Use (?m) for ^ and $ at line ends.
func Fields(re *regexp.Regexp, s string) map[string]string {
	loc := re.FindStringSubmatchIndex(s)
	if loc == nil {
		return nil
	}
	return fieldsAt(re, s, loc)
}

// AllFields is Fields for every successive non-overlapping match, in order;
// nil when there is none. Scanners that print one line per detection use it
// with a (?m) anchored pattern.
func AllFields(re *regexp.Regexp, s string) []map[string]string {
	locs := re.FindAllStringSubmatchIndex(s, -1)
	if locs == nil {
		return nil
	}
	out := make([]map[string]string, len(locs))
	for i, loc := range locs {
		out[i] = fieldsAt(re, s, loc)
	}
	return out
}

// Values returns the value of the group called name in every match of re, in
// order, skipping matches where that group took no part: for instance all the
// detection names in a scanner's report.
func Values(re *regexp.Regexp, s, name string) []string {
	var out []string
	for _, m := range AllFields(re, s) {
		if v, ok := m[name]; ok {
			out = append(out, v)
		}
	}
	return out
}

func fieldsAt(re *regexp.Regexp, s string, loc []int) map[string]string {
	m := map[string]string{}
	for i, name := range re.SubexpNames() {
		if i == 0 || name == "" || loc[2*i] < 0 {
			continue
		}
		if _, seen := m[name]; !seen {
			m[name] = s[loc[2*i]:loc[2*i+1]]
		}
	}
	return m
}
