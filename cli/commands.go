package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"text/tabwriter"
)

// commands lists the engine's commands, or runs one and prints its result
// as indented JSON.
func (p *Program) commands(ctx context.Context, args []string) error {
	log, err := p.newLogger(slog.LevelWarn)
	if err != nil {
		return err
	}
	engine := p.engine(log)
	defer shutdown(engine, log)
	if len(args) == 0 {
		cmds := engine.Commands()
		if len(cmds) == 0 {
			fmt.Fprintf(p.Stdout, "%s exposes no commands.\n", p.Name)
			return nil
		}
		tw := tabwriter.NewWriter(p.Stdout, 0, 4, 2, ' ', 0)
		for _, c := range cmds {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, c.Help)
		}
		return tw.Flush()
	}
	out, err := engine.Command(ctx, args[0], args[1:])
	if err != nil {
		return fmt.Errorf("commands %s: %w", args[0], err)
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return fmt.Errorf("commands %s: result is not JSON: %w", args[0], err)
	}
	_, err = fmt.Fprintf(p.Stdout, "%s\n", b)
	return err
}
