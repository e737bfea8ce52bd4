package main

// `kube-control-plane node` runs one real Kubernetes node against a control plane started
// with --node-ip: containerd (with its CRI plugin, runc and the CNI bridge plugin),
// kubelet and kube-proxy. Everything it creates lives under --data-dir or is named
// below (one bridge, kube-proxy's iptables chains, the kubepods cgroups), and all of it
// is removed again when it stops, so a test leaves no mount, process or interface behind.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	// The node's pod network: a bridge whose address is also where the apiserver is
	// advertised to pods (see supervise.go's --node-ip), so pod traffic never leaves the host.
	nodeBridge   = "pwrnode0"
	nodeGateway  = "10.244.0.1"
	nodePodCIDR  = "10.244.0.0/24"
	nodeName     = "pwreset-node"
	sandboxImage = "localhost/pwreset/pause:1"
	cniBinDir    = "/usr/lib/cni"
)

type nodeOptions struct {
	dataDir, kubeconfig, binDir string
	images                      []string
	exitWithParent              bool
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runNode(args []string) int {
	var o nodeOptions
	var images stringList
	fs := flag.NewFlagSet("kube-control-plane node", flag.ContinueOnError)
	fs.StringVar(&o.dataDir, "data-dir", "", "directory for containerd, kubelet, configs and logs (required)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "admin kubeconfig of a control plane started with --node-ip="+nodeGateway+" (required)")
	fs.StringVar(&o.binDir, "bin-dir", "", "directory with containerd, ctr and containerd-shim-runc-v2 (`make node`) (required)")
	fs.Var(&images, "import", "OCI archive to import into containerd before the node starts (repeatable; the first is the pause image)")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", false, "stop when the parent process exits (for test harnesses)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.dataDir == "" || o.kubeconfig == "" || o.binDir == "" {
		fs.Usage()
		return 2
	}
	o.images = images
	var err error
	if o.dataDir, err = filepath.Abs(o.dataDir); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.exitWithParent {
		ctx = watchParent(ctx)
	}
	n := &node{o: o, sock: filepath.Join(o.dataDir, "containerd", "containerd.sock")}
	defer n.cleanup()
	return n.run(ctx)
}

type node struct {
	o                          nodeOptions
	sock                       string
	containerd, kubelet, proxy *child
	bridgeCreated              bool
}

func (n *node) path(parts ...string) string {
	return filepath.Join(append([]string{n.o.dataDir}, parts...)...)
}

func (n *node) run(ctx context.Context) int {
	for _, d := range []string{"containerd", "kubelet", "cni/net.d", "cni/ipam", "logs"} {
		if err := os.MkdirAll(n.path(d), 0o755); err != nil {
			return fail(err)
		}
	}
	if err := n.createBridge(); err != nil {
		return fail(err)
	}
	if err := n.writeConfigs(); err != nil {
		return fail(err)
	}
	var err error
	// containerd finds its shim on PATH; runc and iptables are in /usr/sbin.
	os.Setenv("PATH", n.o.binDir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	n.containerd, err = startBinary(n.path("logs"), "containerd", filepath.Join(n.o.binDir, "containerd"),
		[]string{"--config", n.path("containerd", "config.toml")})
	if err != nil {
		return fail(err)
	}
	if err := n.waitContainerd(ctx); err != nil {
		return fail(err)
	}
	for _, img := range n.o.images {
		if out, err := n.ctr("images", "import", "--all-platforms", img); err != nil {
			return fail(fmt.Errorf("importing %s: %v\n%s", img, err, out))
		}
	}
	kubeletPort, err := freePort()
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(n.path("kubelet", "config.yaml"), []byte(n.kubeletConfig(kubeletPort)), 0o644); err != nil {
		return fail(err)
	}
	n.kubelet, err = startChild(n.path("logs"), "kubelet", []string{
		"--config=" + n.path("kubelet", "config.yaml"),
		"--kubeconfig=" + n.o.kubeconfig,
		"--root-dir=" + n.path("kubelet"),
		"--cert-dir=" + n.path("kubelet", "pki"),
		"--hostname-override=" + nodeName,
		"--node-ip=" + nodeGateway,
		"--v=1",
	})
	if err != nil {
		return fail(err)
	}
	n.proxy, err = startChild(n.path("logs"), "kube-proxy", []string{"--config=" + n.path("kube-proxy.yaml"), "--v=1"})
	if err != nil {
		return fail(err)
	}
	fmt.Println("ready")
	select {
	case <-ctx.Done():
		return 0
	case <-n.containerd.exited:
		return fail(fmt.Errorf("containerd exited; see %s", n.containerd.logPath))
	case <-n.kubelet.exited:
		return fail(fmt.Errorf("kubelet exited:\n%s", tail(n.kubelet.logPath, 20)))
	case <-n.proxy.exited:
		return fail(fmt.Errorf("kube-proxy exited:\n%s", tail(n.proxy.logPath, 20)))
	}
}

func (n *node) createBridge() error {
	if _, err := net.InterfaceByName(nodeBridge); err == nil {
		return fmt.Errorf("interface %s exists: another node is running, or one was killed without cleanup "+
			"(remove it with `ip link del %s`)", nodeBridge, nodeBridge)
	}
	for _, args := range [][]string{
		{"link", "add", nodeBridge, "type", "bridge"},
		{"addr", "add", nodeGateway + "/24", "dev", nodeBridge},
		{"link", "set", nodeBridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		n.bridgeCreated = true
	}
	return nil
}

func (n *node) ctr(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(n.o.binDir, "ctr"), append([]string{"--address", n.sock, "--namespace", "k8s.io"}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (n *node) waitContainerd(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := n.ctr("version")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containerd not answering after 60s: %s\n%s", out, tail(n.containerd.logPath, 20))
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted while waiting for containerd")
		case <-n.containerd.exited:
			return fmt.Errorf("containerd exited during start-up:\n%s", tail(n.containerd.logPath, 20))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startBinary runs an executable as a child that dies with this process (Pdeathsig).
func startBinary(logDir, name, path string, args []string) (*child, error) {
	logPath := filepath.Join(logDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(c.exited)
	}()
	return c, nil
}
