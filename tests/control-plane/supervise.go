package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

const (
	readyTimeout = 90 * time.Second
	// Children get this long after SIGTERM; the whole stop must fit in 10 s.
	childStopGrace = 6 * time.Second
)

type options struct {
	dataDir        string
	port           int
	exitWithParent bool
	removeDataDir  bool
	// nodeIP, when set, prepares the control plane for a real node (see nodeArgs).
	nodeIP string
}

func supervise(args []string) int {
	var o options
	fs := flag.NewFlagSet("kube-control-plane", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for etcd data, certificates, logs and admin.kubeconfig (required)")
	fs.IntVar(&o.port, "port", 0, "kube-apiserver secure port on 127.0.0.1 (0: pick a free port)")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false, "stop when the parent process exits (for test harnesses)")
	fs.BoolVar(&o.removeDataDir, "remove-data-dir", false, "delete --data-dir after stopping")
	fs.StringVar(&o.nodeIP, "node-ip", "", "serve pods on a node (kube-control-plane node): advertise this host address "+
		"to them, admit service account tokens and run kube-scheduler")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: kube-control-plane --data-dir DIR [--port N]\n"+
			"Starts etcd, kube-apiserver and kube-controller-manager; prints \"ready\" once /readyz answers ok\n"+
			"and DIR/admin.kubeconfig is written. SIGTERM or SIGINT stops everything.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.dataDir == "" {
		fs.Usage()
		return 2
	}
	abs, err := filepath.Abs(o.dataDir)
	if err != nil {
		return fail(err)
	}
	o.dataDir = abs

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.exitWithParent {
		ctx = watchParent(ctx)
	}
	code := run(ctx, o)
	if o.removeDataDir {
		if err := os.RemoveAll(o.dataDir); err != nil {
			fmt.Fprintf(os.Stderr, "kube-control-plane: removing data dir: %v\n", err)
		}
	}
	return code
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "kube-control-plane: %v\n", err)
	return 1
}

func run(ctx context.Context, o options) int {
	if err := os.MkdirAll(o.dataDir, 0o700); err != nil {
		return fail(err)
	}
	certs := newPKI(filepath.Join(o.dataDir, "pki"))
	if err := certs.ensure(); err != nil {
		return fail(fmt.Errorf("creating certificates: %w", err))
	}
	port := o.port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return fail(err)
		}
		port = p
	}

	etcd, etcdURL, err := startEtcd(o.dataDir)
	if err != nil {
		return fail(fmt.Errorf("starting etcd: %w", err))
	}
	defer etcd.Close()

	apiserver, err := startChild(o.dataDir, "kube-apiserver", nodeArgs(o.nodeIP, apiserverArgs(o.dataDir, certs, port, etcdURL)))
	if err != nil {
		return fail(err)
	}
	defer apiserver.stop()

	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := waitReady(ctx, server, certs, apiserver); err != nil {
		return fail(err)
	}
	kubeconfig := filepath.Join(o.dataDir, "admin.kubeconfig")
	if err := writeKubeconfig(kubeconfig, server, certs); err != nil {
		return fail(err)
	}
	kcm, err := startChild(o.dataDir, "kube-controller-manager", controllerManagerArgs(kubeconfig, certs))
	if err != nil {
		return fail(err)
	}
	defer kcm.stop()
	// A node needs pods scheduled; without one, pods stay Pending, as before.
	sched := &child{exited: make(chan struct{})}
	if o.nodeIP != "" {
		sched, err = startChild(o.dataDir, "kube-scheduler", []string{
			"--kubeconfig=" + kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=0",
		})
		if err != nil {
			return fail(err)
		}
		defer sched.stop()
	}

	fmt.Println("ready")

	select {
	case <-ctx.Done():
		return 0
	case <-apiserver.exited:
		return fail(fmt.Errorf("kube-apiserver exited unexpectedly; see %s", apiserver.logPath))
	case <-kcm.exited:
		return fail(fmt.Errorf("kube-controller-manager exited unexpectedly; see %s", kcm.logPath))
	case <-sched.exited:
		return fail(fmt.Errorf("kube-scheduler exited unexpectedly; see %s", sched.logPath))
	case <-etcd.Err():
		return fail(errors.New("etcd failed"))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Name = "control-plane"
	cfg.Dir = filepath.Join(dataDir, "etcd")
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(peerPort))}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dataDir, "etcd.log")}
	// A disposable test store: durability across machine crashes buys nothing here,
	// and fsync dominates write latency on virtual disks.
	cfg.UnsafeNoFsync = true
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "5m"
	cfg.QuotaBackendBytes = 4 << 30
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("etcd did not become ready within 60s")
	}
	return e, clientURL.String(), nil
}

func apiserverArgs(dataDir string, certs pki, port int, etcdURL string) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + certs.dir,
		"--tls-cert-file=" + certs.servingCert,
		"--tls-private-key-file=" + certs.servingKy,
		"--client-ca-file=" + certs.caCert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + certs.saPub,
		"--service-account-signing-key-file=" + certs.saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		// No kubelet runs pods here, so nothing mounts service account tokens into them.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
		"--v=0",
	}
}

// nodeArgs changes the apiserver flags for a control plane with a node. Pods reach the
// apiserver through the kubernetes Service (10.0.0.1, which kube-proxy translates to the
// advertised address), so it must listen beyond loopback and advertise the node-side
// address; the ServiceAccount admission plugin mounts the token in-cluster clients need.
func nodeArgs(nodeIP string, args []string) []string {
	if nodeIP == "" {
		return args
	}
	out := make([]string, 0, len(args))
	for _, a := range args {
		switch {
		case strings.HasPrefix(a, "--bind-address="):
			a = "--bind-address=0.0.0.0"
		case strings.HasPrefix(a, "--advertise-address="):
			a = "--advertise-address=" + nodeIP
		case strings.HasPrefix(a, "--disable-admission-plugins="):
			continue
		}
		out = append(out, a)
	}
	// The node's name does not resolve; kubectl logs and exec reach kubelet by its IP.
	return append(out, "--kubelet-preferred-address-types=InternalIP")
}

func controllerManagerArgs(kubeconfig string, certs pki) []string {
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file=" + certs.saKey,
		"--root-ca-file=" + certs.caCert,
		"--use-service-account-credentials=false",
		"--profiling=false",
		"--v=0",
	}
}

type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
}

func startChild(dataDir, name string, args []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	// If the supervisor is SIGKILLed, the kernel kills the children too: nothing is
	// left running after it stops, however it stops.
	return startBinary(dataDir, name, self, append([]string{name}, args...))
}

func (c *child) stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(childStopGrace):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

func waitReady(ctx context.Context, server string, certs pki, apiserver *child) error {
	tlsConfig, err := adminTLS(certs)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %s; see %s", readyTimeout, apiserver.logPath)
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted while waiting for kube-apiserver")
		case <-apiserver.exited:
			return fmt.Errorf("kube-apiserver exited during start-up:\n%s", tail(apiserver.logPath, 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func adminTLS(certs pki) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(certs.adminCert, certs.adminKey)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(certs.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func writeKubeconfig(path, server string, certs pki) error {
	b64 := func(file string) (string, error) {
		data, err := os.ReadFile(file)
		return base64.StdEncoding.EncodeToString(data), err
	}
	ca, err := b64(certs.caCert)
	if err != nil {
		return err
	}
	cert, err := b64(certs.adminCert)
	if err != nil {
		return err
	}
	key, err := b64(certs.adminKey)
	if err != nil {
		return err
	}
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: kube-control-plane
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kube-control-plane
  context:
    cluster: kube-control-plane
    user: admin
    namespace: default
current-context: kube-control-plane
`, server, ca, cert, key)
	// Write then rename: a reader polling for the file never sees half of it.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func watchParent(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(ctx)
	parent := os.Getppid()
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if os.Getppid() != parent {
					cancel()
					return
				}
			}
		}
	}()
	return ctx
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
