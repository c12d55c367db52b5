// Package pgrole renders config/portal/readonly-role.sql (psql syntax, with
// the variables role and password) into statements pgx can run, so the
// development stack applies the very file operators run with psql without
// importing the portal (portal.ReadOnlyRoleSQL delegates here).
package pgrole

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

// ReadOnlySQL renders script for role and password.
func ReadOnlySQL(script, role, password string) []string {
	script = strings.ReplaceAll(script, `:"role"`, pgx.Identifier{role}.Sanitize())
	script = strings.ReplaceAll(script, `:'password'`, "'"+strings.ReplaceAll(password, "'", "''")+"'")
	var stmts []string
	for _, line := range strings.Split(script, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "--") {
			stmts = append(stmts, strings.TrimSuffix(line, ";"))
		}
	}
	return stmts
}
