"""Cross-checks a rendered overlay (kustomize build output on stdin) for the
mistakes a schema cannot see: the pieces of agentmesh that must agree with
each other. Exits 1 and names every problem found.

    kustomize build k8s/overlays/production | python3 k8s/check.py production
"""

import sys
import tomllib

import yaml

# The health names each binary serves (agentmesh_proto::v1::*_SERVICE_NAME).
READY_SERVICE = {
    "orchestrator": "agentmesh.v1.OrchestratorService",
    "agent": "agentmesh.v1.AgentService",
}
CONFIG_DIR = "/etc/agentmesh/"

problems = []


# Config keys naming a file or folder the service writes.
WRITTEN_PATHS = [("data", "root"), ("store", "path")]


def problem(where, what):
    problems.append(f"{where}: {what}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def main():
    overlay = sys.argv[1] if len(sys.argv) > 1 else "stdin"
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    configmaps = by_kind.get("ConfigMap", {})
    if not deployments:
        problem(overlay, "no Deployments rendered")

    # name -> (pod labels, {port name: number}, config file) of each Deployment
    pods = {}
    for name, dep in deployments.items():
        where = f"{overlay}/Deployment/{name}"
        spec = dep["spec"]["template"]["spec"]
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        if not selects(dep["spec"]["selector"]["matchLabels"], labels):
            problem(where, "its selector does not select its own pods")
        # Pod Security "restricted", which the production namespace enforces.
        pod_sc = spec.get("securityContext", {})
        if not pod_sc.get("runAsNonRoot"):
            problem(where, "pods may run as root")
        if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problem(where, "no RuntimeDefault seccomp profile")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            cw = f"{where}/{c['name']}"
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            res = c.get("resources", {})
            for kind, key in [("requests", "cpu"), ("requests", "memory"), ("limits", "memory")]:
                if key not in res.get(kind, {}):
                    problem(cw, f"no resources.{kind}.{key}")
            sc = c.get("securityContext", {})
            if not sc.get("readOnlyRootFilesystem") or sc.get("allowPrivilegeEscalation", True):
                problem(cw, "root filesystem writable or privilege escalation allowed")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problem(cw, "capabilities not all dropped")
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
                if probe not in c:
                    problem(cw, f"no {probe}")
                elif c[probe].get("grpc", {}).get("port") != ports.get("grpc"):
                    problem(cw, f"{probe} does not probe the grpc port {ports.get('grpc')}")
            component = labels.get("app.kubernetes.io/component")
            want = READY_SERVICE.get(component)
            got = c.get("readinessProbe", {}).get("grpc", {}).get("service")
            if want is None:
                problem(cw, f"unknown component {component!r}")
            elif got != want:
                problem(cw, f"readiness probes health service {got!r}, the binary serves {want!r}")

            args = c.get("args", [])
            if "--config" not in args or args.index("--config") + 1 >= len(args):
                problem(cw, "no --config argument")
                continue
            path = args[args.index("--config") + 1]
            mount = next(
                (m for m in c.get("volumeMounts", []) if path.startswith(m["mountPath"].rstrip("/") + "/")),
                None,
            )
            cm_name = (volumes.get(mount["name"], {}).get("configMap") or {}).get("name") if mount else None
            cm = configmaps.get(cm_name)
            key = path.rsplit("/", 1)[-1]
            if cm is None or key not in cm.get("data", {}):
                problem(cw, f"--config {path} is not a key of a mounted, rendered ConfigMap")
                continue
            cfg = tomllib.loads(cm["data"][key])
            listen = cfg.get("server", {}).get("listen", "")
            host, _, port = listen.rpartition(":")
            if host not in ("0.0.0.0", "[::]"):
                problem(cw, f"{key}: server.listen {listen!r} is not reachable on the pod IP")
            if not port.isdigit() or int(port) != ports.get("grpc"):
                problem(cw, f"{key}: server.listen port {port} is not the grpc containerPort {ports.get('grpc')}")
            # Files the service writes must be on a writable volume: the
            # root filesystem is read-only.
            for section, field in WRITTEN_PATHS:
                written = cfg.get(section, {}).get(field)
                if not written:
                    continue
                on = next(
                    (m for m in c.get("volumeMounts", [])
                     if (written.rstrip("/") + "/").startswith(m["mountPath"].rstrip("/") + "/")),
                    None,
                )
                vol = volumes.get(on["name"], {}) if on else {}
                if on is None or on.get("readOnly") or not ("emptyDir" in vol or "persistentVolumeClaim" in vol):
                    problem(cw, f"{key}: {section}.{field} {written!r} is not on a writable emptyDir or PVC mount")
            grace_ms = cfg.get("server", {}).get("shutdown_grace_ms", 20000)
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            needed = grace_ms / 1000 + pre_stop
            if spec.get("terminationGracePeriodSeconds", 30) <= needed:
                problem(where, f"terminationGracePeriodSeconds is not above {needed:g} s (preStop + shutdown_grace_ms)")
            pods[name] = (labels, ports, cfg)

    def pods_of(selector):
        return [(n, p) for n, p in pods.items() if selects(selector, p[0])]

    for name, svc in services.items():
        where = f"{overlay}/Service/{name}"
        backing = pods_of(svc["spec"].get("selector"))
        if not backing:
            problem(where, "selects no Deployment's pods")
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            for dep, (_, ports, _) in backing:
                if target not in ports and target not in ports.values():
                    problem(where, f"targetPort {target} is not a port of {dep}: {ports}")

    # The orchestrator dials every address a name resolves to on the port
    # the entry gives: that port must be the pods' own.
    for dep, (_, _, cfg) in pods.items():
        for entry in cfg.get("discovery", {}).get("dns", []):
            host, _, port = entry.rpartition(":")
            svc = services.get(host)
            where = f"{overlay}/Deployment/{dep}: discovery.dns {entry!r}"
            if svc is None:
                problem(where, "names no Service of this namespace")
                continue
            if svc["spec"].get("clusterIP") != "None":
                problem(where, "names a Service with a cluster IP: DNS would give one address, not one per replica")
            for backing, (_, ports, _) in pods_of(svc["spec"].get("selector")):
                if not port.isdigit() or int(port) not in ports.values():
                    problem(where, f"port {port} is not a port of {backing}'s pods: {ports}")

    for kind in ["PodDisruptionBudget", "NetworkPolicy"]:
        for name, obj in by_kind.get(kind, {}).items():
            sel = obj["spec"].get("selector", obj["spec"].get("podSelector", {}))
            if not pods_of(sel.get("matchLabels")):
                problem(f"{overlay}/{kind}/{name}", "selects no Deployment's pods")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = hpa["spec"]["scaleTargetRef"]
        if target["kind"] != "Deployment" or target["name"] not in deployments:
            problem(f"{overlay}/HorizontalPodAutoscaler/{name}", f"scales {target['kind']}/{target['name']}, which is not rendered")

    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{overlay}: {len(docs)} objects, {len(deployments)} Deployments cross-checked")


if __name__ == "__main__":
    main()
