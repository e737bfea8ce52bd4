package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

func (n *node) writeConfigs() error {
	// host-local keeps its leases under the data dir, not in /var/lib/cni.
	cni := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "pwreset",
  "plugins": [{
    "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": %q,
             "ranges": [[{"subnet": %q, "gateway": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`, nodeBridge, n.path("cni", "ipam"), nodePodCIDR, nodeGateway)
	// Every path containerd would put under /var/lib, /run or /opt is under the data dir,
	// netns mounts included, so cleanup only has to look there.
	containerd := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[plugins.'io.containerd.internal.v1.opt']
  path = %[4]q

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # Some hosts (this test VM) withhold CAP_SYS_RESOURCE, so no process may lower its
  # oom_score_adj: the pause container's -998 would fail in runc. Clamp it to containerd's.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[6]q]
    conf_dir = %[7]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
`, n.path("containerd", "root"), n.path("containerd", "state"), n.sock, n.path("containerd", "opt"),
		sandboxImage, cniBinDir, n.path("cni", "net.d"))
	proxy := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %q
hostnameOverride: %s
mode: iptables
clusterCIDR: %s
bindAddress: 127.0.0.1
healthzBindAddress: ""
metricsBindAddress: ""
# Zero: leave the host's conntrack sysctls as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
iptables:
  # true would set route_localnet on the host.
  localhostNodePorts: false
`, n.o.kubeconfig, nodeName, nodePodCIDR)
	files := map[string]string{
		n.path("cni", "net.d", "10-pwreset.conflist"): cni,
		n.path("containerd", "config.toml"):           containerd,
		n.path("kube-proxy.yaml"):                     proxy,
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) kubeletConfig(port int) string {
	caFile := filepath.Join(filepath.Dir(n.o.kubeconfig), "pki", "ca.crt")
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The test VM mounts cgroup v1; kubelet 1.36 refuses it unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://%[1]s
# Bound to the bridge address only: the apiserver reaches it there for logs and exec.
# Anonymous and AlwaysAllow because the test apiserver has no kubelet client certificate.
address: %[2]s
port: %[3]d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
  x509:
    clientCAFile: %[4]q
authorization:
  mode: AlwaysAllow
# No cluster DNS: the operator reaches the apiserver and Graph by IP.
resolvConf: ""
podLogsDir: %[5]q
volumePluginDir: %[6]q
maxPods: 20
registerNode: true
# A shared build machine's disk may be fuller than kubelet's defaults like: evicting or
# garbage-collecting the only copy of an imported image would break the test, not test it.
evictionHard:
  memory.available: "50Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, n.sock, nodeGateway, port, caFile, n.path("kubelet", "pod-logs"), n.path("kubelet", "volume-plugins"))
}

// podCgroupRoots are the cgroup v1 directories kubelet creates with the cgroupfs driver.
func podCgroupRoots() []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	return roots
}

// removeCgroupTree removes an (empty of processes) cgroup hierarchy, children first.
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}

// mountsUnder lists the mount points below prefix, deepest first.
func mountsUnder(prefix string) []string {
	data, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 1 && strings.HasPrefix(fields[1], prefix+"/") {
			out = append([]string{fields[1]}, out...)
		}
	}
	return out
}
