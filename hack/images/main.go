// Command images writes a container image holding one static binary as a
// docker-archive tarball, without a Docker daemon or a registry (SPEC §9).
// The image format — layers, config, manifest, the tarball — is
// go-containerregistry's; this program only decides what goes in:
//
//	/<binary>        the static binary, mode 0755, the entrypoint
//	/etc/passwd      a "nonroot" user 65532 (the image's default user)
//	/etc/group       its group
//	/tmp             an empty, world-writable directory (sticky)
//
// The image has no shell and no package manager. Its creation time is zero
// and the layer's file times are fixed, so the same binary gives the same
// digest. Every image is tagged twice: REF:dev (what config/ names) and
// REF:<content tag> (sha-<first 12 hex of the image digest>), which make
// cluster puts in its overlay so changed images roll out and unchanged ones
// do not. The content ref is also written to OUT with ".ref" replacing
// ".tar".
//
//	images -bin bin/images/bin/tracker -ref promo-operator/tracker -out bin/images/tracker.tar
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonroot is the image's user: distroless's "nonroot", the UID the manifests
// in config/ run as.
const nonroot = 65532

func main() {
	var (
		bin  = flag.String("bin", "", "static binary to put at /<basename> as the entrypoint (required)")
		repo = flag.String("ref", "", "image repository, e.g. promo-operator/tracker (required; tagged :dev and :sha-…)")
		out  = flag.String("out", "", "tarball to write (required)")
		args = flag.String("args", "", "comma-separated default arguments (the image's Cmd)")
	)
	flag.Parse()
	if *bin == "" || *repo == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	ref, err := write(*bin, *repo, *out, *args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "images:", err)
		os.Exit(1)
	}
	fmt.Println(ref)
}

func write(bin, repo, out, args string) (string, error) {
	img, err := build(bin, args)
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	dev, err := name.NewTag(repo + ":dev")
	if err != nil {
		return "", fmt.Errorf("parsing -ref: %w", err)
	}
	content := dev.Context().Tag("sha-" + digest.Hex[:12])
	tmp := out + ".tmp"
	if err := tarball.MultiRefWriteToFile(tmp, map[name.Reference]v1.Image{dev: img, content: img}); err != nil {
		return "", fmt.Errorf("writing %s: %w", out, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	// Kubernetes names images as the user wrote them; keep the short form.
	short := repo + ":" + content.TagStr()
	if err := os.WriteFile(strings.TrimSuffix(out, ".tar")+".ref", []byte(short+"\n"), 0o644); err != nil {
		return "", err
	}
	return short, nil
}

func build(bin, args string) (v1.Image, error) {
	exe, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	base := filepath.Base(bin)
	layer, err := rootfs(base, exe)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Entrypoint = []string{"/" + base}
	if args != "" {
		cfg.Config.Cmd = strings.Split(args, ",")
	}
	cfg.Config.User = fmt.Sprintf("%d:%d", nonroot, nonroot)
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/"}
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.source": "promo-operator"}
	return mutate.ConfigFile(img, cfg)
}

// rootfs is the image's one layer. archive/tar writes the entries;
// go-containerregistry computes digests and compresses.
func rootfs(base string, exe []byte) (v1.Layer, error) {
	epoch := time.Unix(0, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		hdr  tar.Header
		body []byte
	}{
		{tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil},
		{tar.Header{Name: "etc/passwd", Mode: 0o644}, []byte(fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonroot, nonroot))},
		{tar.Header{Name: "etc/group", Mode: 0o644}, []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", nonroot))},
		{tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777}, nil},
		{tar.Header{Name: base, Mode: 0o755}, exe},
	}
	for _, f := range files {
		h := f.hdr
		h.ModTime, h.Format = epoch, tar.FormatPAX
		if h.Typeflag == 0 {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
}
