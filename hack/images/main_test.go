package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestImage writes an image the way make images does and reads it back with
// go-containerregistry: both tags, the non-root user, the entrypoint, an
// executable binary, and the same digest for the same binary.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "tracker")
	if err := os.WriteFile(bin, []byte("\x7fELF not really"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "tracker.tar")
	ref, err := write(bin, "promo-operator/tracker", out, "serve,--listen=:8080")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, "promo-operator/tracker:sha-") {
		t.Fatalf("content ref %q", ref)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "tracker.ref")); strings.TrimSpace(string(b)) != ref {
		t.Fatalf("tracker.ref holds %q, want %q", b, ref)
	}
	for _, tag := range []string{"promo-operator/tracker:dev", ref} {
		tg, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		img, err := tarball.ImageFromPath(out, &tg)
		if err != nil {
			t.Fatalf("reading %s back: %v", tag, err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Config.User != "65532:65532" || strings.Join(cfg.Config.Entrypoint, " ") != "/tracker" ||
			strings.Join(cfg.Config.Cmd, " ") != "serve --listen=:8080" || cfg.OS != "linux" {
			t.Fatalf("config: user %q entrypoint %q cmd %q os %q", cfg.Config.User, cfg.Config.Entrypoint, cfg.Config.Cmd, cfg.OS)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("layers: %d, %v", len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		modes := map[string]int64{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			modes[h.Name] = h.Mode
		}
		_ = rc.Close()
		if modes["tracker"] != 0o755 || modes["tmp/"] != 0o1777 || modes["etc/passwd"] != 0o644 {
			t.Fatalf("layer modes %v", modes)
		}
	}
	again, err := write(bin, "promo-operator/tracker", filepath.Join(dir, "again.tar"), "serve,--listen=:8080")
	if err != nil || again != ref {
		t.Fatalf("same binary gave %q (%v), first %q: the digest must not depend on the time", again, err, ref)
	}
}
