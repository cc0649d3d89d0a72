package main

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/reconciler/manifest"
)

func init() { register(newValidateCmd) }

// defaultManifests is where the commands look when given no path.
const defaultManifests = "./manifests"

func newValidateCmd(*globalOptions) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate [PATH...]",
		Short: "Check manifests offline: print every error, exit 1 if there is one",
		Long: `validate reads manifest files and directories (default ` + defaultManifests + `) the way
the controller does, without Docker, and prints every error with its file,
line, column and field. It exits 0 when all manifests are valid, 1 otherwise.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: must be text or json", output)
			}
			if len(args) == 0 {
				args = []string{defaultManifests}
			}
			r := validate(args)
			var err error
			if output == "json" {
				err = r.writeJSON(cmd.OutOrStdout())
			} else {
				err = r.writeText(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if !r.Valid {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// validation is the result of validate, in the shape -o json prints.
type validation struct {
	Valid    bool             `json:"valid"`
	Files    []string         `json:"files"`
	Policies []policySummary  `json:"policies"`
	Errors   []manifest.Error `json:"errors"`
}

type policySummary struct {
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	File       string `json:"file"`
	Line       int    `json:"line"`
	Generation string `json:"generation"`
}

func validate(paths []string) validation {
	r := validation{Files: []string{}, Policies: []policySummary{}, Errors: []manifest.Error{}}
	set, err := manifest.Load(paths...)
	if err != nil {
		r.Errors = append(r.Errors, manifest.Error{Message: err.Error()})
		return r
	}
	r.Files = append(r.Files, set.Files...)
	r.Errors = append(r.Errors, set.Errors...)
	for _, o := range set.Objects {
		r.Policies = append(r.Policies, policySummary{Kind: o.Kind, Name: o.Name, File: o.File, Line: o.Line, Generation: o.Generation})
	}
	r.Valid = len(r.Errors) == 0
	return r
}

func (r validation) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // messages say <stack name>
	return enc.Encode(r)
}

func (r validation) writeText(w io.Writer) error {
	for _, e := range r.Errors {
		if _, err := fmt.Fprintln(w, e.Error()); err != nil {
			return err
		}
	}
	var err error
	switch {
	case !r.Valid:
		files := map[string]bool{}
		for _, e := range r.Errors {
			if e.File != "" {
				files[e.File] = true
			}
		}
		msg := plural(len(r.Errors), "error")
		if len(files) > 0 {
			msg += " in " + plural(len(files), "file")
		}
		_, err = fmt.Fprintln(w, msg)
	case len(r.Files) == 0:
		_, err = fmt.Fprintln(w, "no manifest files found")
	default:
		_, err = fmt.Fprintf(w, "%s in %s: valid\n", plural(len(r.Policies), "policy"), plural(len(r.Files), "file"))
	}
	return err
}

func plural(n int, word string) string {
	switch {
	case n == 1:
		return "1 " + word
	case word == "policy":
		return fmt.Sprintf("%d policies", n)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
