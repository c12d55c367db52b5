package devstack

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"promocodes.dev/promo-operator/internal/pgrole"
)

// portalRole is the read-only PostgreSQL role the development portal logs in with.
const portalRole = "promo_portal"

// StartPortal creates the portal's read-only database role from
// config/portal/readonly-role.sql, starts the portal and waits until it is
// ready. Trackers must have migrated the database first.
func (s *Stack) StartPortal(ctx context.Context, port int) error {
	p, err := portOr(port)
	if err != nil {
		return err
	}
	dbURL, err := s.portalDatabaseURL(ctx)
	if err != nil {
		return err
	}
	s.PortalURL = fmt.Sprintf("http://127.0.0.1:%d", p)
	s.PortalToken = randomHex(16)
	tokenFile := filepath.Join(s.opts.Dir, "portal-token")
	if err := os.WriteFile(tokenFile, []byte(s.PortalToken+"\n"), 0o600); err != nil {
		return err
	}
	s.logf("starting the portal on %s", s.PortalURL)
	proc, err := startProc("portal", s.LogDir, []string{"KUBECONFIG=" + s.Kubeconfig}, s.Bin("portal"),
		"--listen=127.0.0.1:"+strconv.Itoa(p),
		"--database-url="+dbURL,
		"--token-file="+tokenFile,
	)
	if err != nil {
		return err
	}
	s.Portal = proc
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := waitHTTP(wctx, proc, s.PortalURL+"/readyz", nil); err != nil {
		return fmt.Errorf("portal not ready: %w", err)
	}
	return nil
}

// portalDatabaseURL applies the read-only role script and returns a URL that
// logs in as that role. With a $DATABASE_URL whose user may not create roles,
// it falls back to that URL: the portal still opens read-only transactions.
func (s *Stack) portalDatabaseURL(ctx context.Context) (string, error) {
	script, err := os.ReadFile(filepath.Join(s.opts.Root, "config", "portal", "readonly-role.sql"))
	if err != nil {
		return "", err
	}
	password := randomHex(16)
	conn, err := pgx.Connect(ctx, s.DatabaseURL)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	for _, stmt := range pgrole.ReadOnlySQL(string(script), portalRole, password) {
		_, err := conn.Exec(ctx, stmt)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42710" { // the role exists (an earlier run): new password
			_, err = conn.Exec(ctx, "ALTER ROLE "+portalRole+" PASSWORD '"+password+"'")
		}
		if err != nil {
			s.logf("portal: cannot set up the read-only role (%v); using $DATABASE_URL's user", err)
			return s.DatabaseURL, nil
		}
	}
	u, err := url.Parse(s.DatabaseURL)
	if err != nil {
		return "", err
	}
	u.User = url.UserPassword(portalRole, password)
	return u.String(), nil
}
