package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/lmittmann/tint"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// globalOptions are the flags every command shares.
type globalOptions struct {
	logLevel  string
	logFormat string
}

func (g *globalOptions) addFlags(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	cmd.PersistentFlags().StringVar(&g.logFormat, "log-format", "auto", "log format: auto (colored on a terminal, JSON otherwise), text, json")
}

// logger builds the process logger: tint's colored handler on a terminal,
// JSON when stderr is not one (or when asked).
func (g *globalOptions) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: must be debug, info, warn or error", g.logLevel)
	}
	format := strings.ToLower(g.logFormat)
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "color"
		}
	}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
	case "text":
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, NoColor: true})), nil
	case "color":
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level})), nil
	}
	return nil, fmt.Errorf("--log-format %q: must be auto, text or json", g.logFormat)
}
