// Command gen writes the JSON Schemas of the swarmsec.io/v1 kinds under
// api/v1/schema: go run ./dev/schemagen (or go generate ./api/v1/).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/swarmsec/swarmsec/dev/schema"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	files, err := schema.Files()
	if err != nil {
		fmt.Fprintln(os.Stderr, "schema:", err)
		os.Exit(1)
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(root, schema.Dir, name), b, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "schema:", err)
			os.Exit(1)
		}
	}
}
