package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanup undoes everything run did, in reverse: kubelet and kube-proxy first (so nothing
// recreates pods), then every pod sandbox through CRI (which kills its containers, ends its
// shim and runs CNI DEL), containerd, kube-proxy's iptables rules, leftover mounts, the
// kubepods cgroups and the bridge. Each step runs even if an earlier one failed.
func (n *node) cleanup() {
	for _, c := range []*child{n.proxy, n.kubelet} {
		if c != nil {
			c.stop()
		}
	}
	if n.containerd != nil {
		if err := removeSandboxes(n.sock); err != nil {
			fmt.Fprintf(os.Stderr, "node: removing pod sandboxes: %v\n", err)
		}
		n.containerd.stop()
	}
	n.killShims()
	if n.proxy != nil {
		self, _ := os.Executable()
		if c, err := startBinary(n.path("logs"), "kube-proxy-cleanup", self, []string{"kube-proxy", "--cleanup"}); err == nil {
			<-c.exited
		}
	}
	removeKubeletChains()
	removeContainerLogLinks(n.o.dataDir)
	for _, m := range mountsUnder(n.o.dataDir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			fmt.Fprintf(os.Stderr, "node: unmount %s: %v\n", m, err)
		}
	}
	for _, root := range podCgroupRoots() {
		removeCgroupTree(root)
	}
	if n.bridgeCreated {
		_ = runQuiet("ip", "link", "del", nodeBridge)
	}
}

func removeSandboxes(sock string) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	for _, s := range list.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "node: stop sandbox %s: %v\n", s.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: s.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "node: remove sandbox %s: %v\n", s.Id, err)
		}
	}
	return nil
}

// killShims ends any containerd shim still serving this node's containerd (a shim
// outlives containerd by design). They are found by this node's own socket path on
// their command line, so no other containerd's shims are touched.
func (n *node) killShims() {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(string(data), "\x00")
		if !strings.HasSuffix(args[0], "containerd-shim-runc-v2") || !strings.Contains(string(data), n.o.dataDir) {
			continue
		}
		var pid int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(p)), "%d", &pid); err == nil {
			fmt.Fprintf(os.Stderr, "node: killing leftover shim %d\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func runQuiet(name string, args ...string) error {
	return exec.Command(name, args...).Run()
}

// removeKubeletChains deletes the iptables chains kubelet creates for itself (a canary
// and KUBE-FIREWALL, hooked into INPUT and OUTPUT), which kube-proxy --cleanup leaves.
// Errors are expected: not every chain exists in every table.
func removeKubeletChains() {
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, hook := range []string{"INPUT", "OUTPUT"} {
			_ = runQuiet(ipt, "-t", "filter", "-D", hook, "-j", "KUBE-FIREWALL")
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			for _, chain := range []string{"KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT"} {
				_ = runQuiet(ipt, "-t", table, "-F", chain)
				_ = runQuiet(ipt, "-t", table, "-X", chain)
			}
		}
	}
}

// removeContainerLogLinks deletes kubelet's links in /var/log/containers (a path kubelet
// does not let us move) that point at this node's pod logs.
func removeContainerLogLinks(dataDir string) {
	links, _ := filepath.Glob("/var/log/containers/*.log")
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, dataDir+"/") {
			_ = os.Remove(l)
		}
	}
}
