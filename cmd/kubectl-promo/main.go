// Command kubectl-promo is the kubectl plugin of SPEC §6: `kubectl promo
// import|export|generate`. Put it on PATH; kubectl finds it by its name.
package main

import (
	"os"

	"promocodes.dev/promo-operator/internal/promoctl"
)

func main() { os.Exit(promoctl.Main()) }
