// Command image assembles an OCI image archive without a registry or a container
// engine: one layer with the base files a distroless "cc" image has (the C runtime
// libraries the binary links, CA certificates, passwd/group with the nonroot user),
// taken from extracted Debian packages rather than the build host's live /lib, and one
// layer with the binary. The result is an OCI layout in a tar archive, which
// `ctr images import` and `podman load` read.
//
//	image --out X.oci.tar --ref docker.io/library/NAME:TAG --binary BIN --dest /NAME \
//	      [--deb-root DIR --lib /lib/x86_64-linux-gnu/libc.so.6 ... --ca-certs] \
//	      --entrypoint '["/NAME"]' --cmd '["run"]' --user 65532:65532 --expose 8080/tcp --label k=v
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

// epoch is every file's mtime and the image's creation time: the same inputs give the
// same image digest.
var epoch = time.Unix(0, 0).UTC()

func main() {
	var out, ref, binary, dest, debRoot, entrypoint, cmd, user string
	var libs, expose, labels list
	var caCerts bool
	flag.StringVar(&out, "out", "", "OCI archive to write")
	flag.StringVar(&ref, "ref", "", "image name recorded in the archive (docker.io/library/NAME:TAG)")
	flag.StringVar(&binary, "binary", "", "the executable to put in the image")
	flag.StringVar(&dest, "dest", "", "its path in the image")
	flag.StringVar(&debRoot, "deb-root", "", "directory the Debian packages were extracted into (dpkg-deb -x)")
	flag.Var(&libs, "lib", "a shared library path (as ldd prints it), copied from --deb-root (repeatable)")
	flag.BoolVar(&caCerts, "ca-certs", false, "add /etc/ssl/certs/ca-certificates.crt built from --deb-root's ca-certificates")
	flag.StringVar(&entrypoint, "entrypoint", "", "ENTRYPOINT as a JSON array")
	flag.StringVar(&cmd, "cmd", "[]", "CMD as a JSON array")
	flag.StringVar(&user, "user", "", "USER")
	flag.Var(&expose, "expose", "exposed port, e.g. 8080/tcp (repeatable)")
	flag.Var(&labels, "label", "label key=value (repeatable)")
	flag.Parse()
	if out == "" || ref == "" || binary == "" || dest == "" || entrypoint == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := build(out, ref, binary, dest, debRoot, entrypoint, cmd, user, libs, expose, labels, caCerts); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func build(out, ref, binary, dest, debRoot, entrypoint, cmd, user string, libs, expose, labels list, caCerts bool) error {
	var base layerFiles
	base.dir("/etc", 0o755, 0)
	base.file("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	base.file("/etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	base.dir("/home/nonroot", 0o700, 65532)
	base.dir("/tmp", 0o1777, 0)
	for _, lib := range libs {
		data, err := readFromRoot(debRoot, lib)
		if err != nil {
			return err
		}
		base.file(lib, 0o755, data)
	}
	if caCerts {
		bundle, err := caBundle(debRoot)
		if err != nil {
			return err
		}
		base.file("/etc/ssl/certs/ca-certificates.crt", 0o644, bundle)
	}
	binData, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	var app layerFiles
	app.file(dest, 0o755, binData)

	// OCI media types throughout (go-containerregistry defaults to Docker's).
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, l := range []layerFiles{base, app} {
		layer, err := l.layer()
		if err != nil {
			return err
		}
		if img, err = mutate.AppendLayers(img, layer); err != nil {
			return err
		}
	}
	cfg := v1.Config{
		User:         user,
		Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		ExposedPorts: map[string]struct{}{},
		Labels:       map[string]string{},
		WorkingDir:   "/",
	}
	if err := json.Unmarshal([]byte(entrypoint), &cfg.Entrypoint); err != nil {
		return fmt.Errorf("--entrypoint: %w", err)
	}
	if err := json.Unmarshal([]byte(cmd), &cfg.Cmd); err != nil {
		return fmt.Errorf("--cmd: %w", err)
	}
	for _, p := range expose {
		cfg.ExposedPorts[p] = struct{}{}
	}
	for _, kv := range labels {
		k, v, _ := strings.Cut(kv, "=")
		cfg.Labels[k] = v
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Config, cf.Architecture, cf.OS, cf.Created = cfg, "amd64", "linux", v1.Time{Time: epoch}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	return writeArchive(out, ref, img)
}

// writeArchive writes an OCI layout, named by both annotations containerd and other
// tools read, and tars it.
func writeArchive(out, ref string, img v1.Image) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".oci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref,
	})); err != nil {
		return err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = rel, epoch, 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil || info.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// readFromRoot reads path inside root, following symlinks inside root (Debian ships
// libc.so.6 and the loader as symlinks on some releases).
func readFromRoot(root, path string) ([]byte, error) {
	if root == "" {
		return nil, fmt.Errorf("--lib %s needs --deb-root", path)
	}
	p := path
	for i := 0; i < 16; i++ {
		full := filepath.Join(root, p)
		target, err := os.Readlink(full)
		if err != nil {
			// Not a link (or missing): read it, naming the package tree on failure.
			data, rerr := os.ReadFile(full)
			if rerr != nil {
				return nil, fmt.Errorf("%s is not in the extracted Debian packages: %w", path, rerr)
			}
			return data, nil
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = target
	}
	return nil, fmt.Errorf("%s: too many symlinks", path)
}

// caBundle concatenates the Mozilla certificates the way update-ca-certificates does.
func caBundle(root string) ([]byte, error) {
	certs, err := filepath.Glob(filepath.Join(root, "usr/share/ca-certificates/mozilla/*.crt"))
	if err != nil || len(certs) == 0 {
		return nil, fmt.Errorf("no certificates under %s/usr/share/ca-certificates/mozilla (is ca-certificates extracted?)", root)
	}
	sort.Strings(certs)
	var b bytes.Buffer
	for _, c := range certs {
		data, err := os.ReadFile(c)
		if err != nil {
			return nil, err
		}
		b.Write(bytes.TrimRight(data, "\n"))
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

type entry struct {
	path string
	mode int64
	uid  int
	data []byte
	dir  bool
}

type layerFiles []entry

func (l *layerFiles) dir(path string, mode int64, uid int) {
	*l = append(*l, entry{path: path, mode: mode, uid: uid, dir: true})
}

func (l *layerFiles) file(path string, mode int64, data []byte) {
	*l = append(*l, entry{path: path, mode: mode, data: data})
}

// layer tars the entries, parent directories first, with fixed owners and times.
func (l layerFiles) layer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	var mkParents func(string) error
	mkParents = func(p string) error {
		parent := filepath.Dir(p)
		if parent == "/" || seen[parent] {
			return nil
		}
		if err := mkParents(parent); err != nil {
			return err
		}
		seen[parent] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(parent, "/") + "/", Mode: 0o755, ModTime: epoch})
	}
	for _, e := range l {
		if err := mkParents(e.path); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(e.path, "/")
		hdr := &tar.Header{Name: name, Mode: e.mode, Uid: e.uid, Gid: e.uid, ModTime: epoch}
		if e.dir {
			seen[e.path] = true
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		} else {
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}
