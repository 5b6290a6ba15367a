package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/polyswarm/psengine"
	"github.com/polyswarm/psengine/examples/yara/libyara"
)

// Info is what the info command prints.
type Info struct {
	VendorVersion     string         `json:"vendor_version"` // libyara's
	Rules             string         `json:"rules"`
	Files             []string       `json:"files"`
	Includes          []string       `json:"includes"`
	RuleCount         int            `json:"rule_count"`
	SignaturesVersion string         `json:"signatures_version"`
	Externals         map[string]any `json:"externals"`
	FileExternals     []string       `json:"file_externals"`
	InfoTags          []string       `json:"info_tags"`
	NoMatch           string         `json:"no_match"`
	Warnings          []string       `json:"warnings,omitempty"`
}

// FileReport is what the scan_file command prints per file.
type FileReport struct {
	Path    string           `json:"path"`
	Verdict psengine.Verdict `json:"verdict"`
	Matches []Match          `json:"matches"`
	Error   string           `json:"error,omitempty"`
}

// Commands exposes info (library version, rule files, includes, digest,
// externals, policy) and scan_file PATH... (the matches per file and the
// verdict), usable without a bounty.
func (Scanner) Commands() []psengine.Command {
	compiled := func(env psengine.Env) (*Compiled, error) {
		c, ok := CompiledOf(env)
		if !ok {
			return nil, fmt.Errorf("%w: no compiled rules", ErrConfig)
		}
		return c, nil
	}
	return []psengine.Command{
		{
			Name: "info",
			Help: "info: libyara's version, the rule files and includes, their digest, the externals and the policy",
			Run: func(_ context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) != 0 {
					return nil, errors.New("info takes no arguments")
				}
				c, err := compiled(env)
				if err != nil {
					return nil, err
				}
				ext := map[string]any{}
				for _, x := range c.Externals {
					ext[x.Name] = x.Value
				}
				includes := c.Includes()
				if includes == nil {
					includes = []string{}
				}
				return Info{VendorVersion: libyara.Version(), Rules: c.Rules, Files: c.Files, Includes: includes,
					RuleCount: c.RuleCount(), SignaturesVersion: c.Digest, Externals: ext, FileExternals: FileExternals,
					InfoTags: c.Policy.InfoTags, NoMatch: string(c.Policy.NoMatch), Warnings: c.Warnings}, nil
			},
		},
		{
			Name: "scan_file",
			Help: "scan_file PATH...: the rules matching each file, and the verdict",
			Run: func(ctx context.Context, env psengine.Env, args []string) (any, error) {
				if len(args) == 0 {
					return nil, errors.New("scan_file needs at least one PATH")
				}
				c, err := compiled(env)
				if err != nil {
					return nil, err
				}
				reports := make([]FileReport, 0, len(args))
				for _, path := range args {
					rep := FileReport{Path: path, Verdict: psengine.Unknown, Matches: []Match{}}
					if matches, err := c.ScanFile(ctx, path); err != nil {
						if ctx.Err() != nil {
							return nil, err
						}
						rep.Error = err.Error()
					} else {
						rep.Verdict = c.Policy.Classify(matches).Verdict
						if matches != nil {
							rep.Matches = matches
						}
					}
					reports = append(reports, rep)
				}
				return reports, nil
			},
		},
	}
}
