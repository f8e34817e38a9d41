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
# Config keys naming a file the service reads at start (certificates,
# keys, tokens): each must be a key of a mounted ConfigMap or Secret.
READ_PATHS = [
    ("server", "tls", "cert"), ("server", "tls", "key"), ("server", "tls", "client_ca"),
    ("discovery", "tls", "ca"), ("discovery", "tls", "cert"), ("discovery", "tls", "key"),
    ("server", "auth", "tokens_file"), ("discovery", "token_file"),
    ("store", "ca_file"),
]
# The keys of a cert-manager Certificate's Secret.
CERTIFICATE_KEYS = {"tls.crt", "tls.key", "ca.crt"}
# The Secrets a CloudNativePG Cluster writes (name suffix -> keys).
CNPG_SECRETS = {
    "-app": {"uri", "username", "password", "host", "port", "dbname", "jdbc-uri", "pgpass"},
    "-ca": {"ca.crt", "ca.key"},
}
# Where the operations docs list every metric (the dashboard may use only those).
OPERATIONS_MD = "../docs/OPERATIONS.md"


def problem(where, what):
    problems.append(f"{where}: {what}")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def dig(cfg, path):
    for key in path:
        if not isinstance(cfg, dict):
            return None
        cfg = cfg.get(key)
    return cfg


def port_of(listen):
    _, _, port = (listen or "").rpartition(":")
    return int(port) if port.isdigit() else None


def main():
    overlay = sys.argv[1] if len(sys.argv) > 1 else "stdin"
    docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    deployments = by_kind.get("Deployment", {})
    services = by_kind.get("Service", {})
    configmaps = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    certificates = by_kind.get("Certificate", {})
    issuers = by_kind.get("Issuer", {})
    # Secret name -> the Certificate that cert-manager writes it from.
    cert_secrets = {c["spec"]["secretName"]: c for c in certificates.values()}
    # Secret name -> its keys, for the Secrets CloudNativePG Clusters write.
    cnpg_clusters = by_kind.get("Cluster", {})
    cnpg_secrets = {
        name + suffix: keys
        for name in cnpg_clusters
        for suffix, keys in CNPG_SECRETS.items()
    }

    def secret_has(secret, key):
        """Whether Secret `secret` (rendered, or written by an operator) has `key`."""
        if secret in cnpg_secrets:
            return key in cnpg_secrets[secret]
        if secret in cert_secrets:
            return key in CERTIFICATE_KEYS
        return key in secrets.get(secret, {}).get("data", {})
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
            # With TLS on the gRPC port, the kubelet's probes (which speak no
            # TLS) must use the plaintext health port (server.health_listen).
            probed = ports.get("health") if "health" in ports else ports.get("grpc")
            for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
                if probe not in c:
                    problem(cw, f"no {probe}")
                elif c[probe].get("grpc", {}).get("port") != probed:
                    problem(cw, f"{probe} does not probe port {probed}")
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
            server = cfg.get("server", {})
            if "tls" in server and "health" not in ports:
                problem(cw, f"{key}: server.tls is set, so probes need a plaintext health port (server.health_listen)")
            if "health" in ports and port_of(server.get("health_listen")) != ports["health"]:
                problem(cw, f"{key}: server.health_listen is not the health containerPort {ports['health']}")
            metrics = dig(cfg, ("telemetry", "metrics", "listen"))
            annotations = dep["spec"]["template"]["metadata"].get("annotations", {})
            if metrics:
                if port_of(metrics) != ports.get("metrics"):
                    problem(cw, f"{key}: telemetry.metrics.listen is not the metrics containerPort {ports.get('metrics')}")
                scrape_port = annotations.get("prometheus.io/port")
                if scrape_port is not None and scrape_port != str(port_of(metrics)):
                    problem(where, f"prometheus.io/port {scrape_port} is not telemetry.metrics.listen's port")
            elif annotations.get("prometheus.io/scrape") == "true":
                problem(where, f"scraped, but {key} sets no telemetry.metrics.listen")
            # Files read at start: a key of a mounted ConfigMap or Secret.
            mounted = {}
            for m in c.get("volumeMounts", []):
                mounted[m["mountPath"].rstrip("/")] = volumes.get(m["name"], {})
            for path in READ_PATHS:
                file = dig(cfg, path)
                if not file:
                    continue
                folder, _, file_key = file.rpartition("/")
                vol = mounted.get(folder)
                setting = ".".join(path)
                if vol is None:
                    problem(cw, f"{key}: {setting} {file!r} is in no mounted volume")
                elif "secret" in vol:
                    secret = vol["secret"]["secretName"]
                    items = {i["path"]: i["key"] for i in vol["secret"].get("items", [])}
                    if secret in cnpg_secrets:
                        if not secret_has(secret, items.get(file_key, file_key)):
                            problem(cw, f"{key}: {setting}: CloudNativePG's Secret {secret!r} has no key {items.get(file_key, file_key)!r}")
                    elif secret in cert_secrets:
                        if file_key not in CERTIFICATE_KEYS:
                            problem(cw, f"{key}: {setting}: a Certificate's Secret has no key {file_key!r}")
                    elif secret not in secrets:
                        problem(cw, f"{key}: {setting}: Secret {secret!r} is neither rendered nor written by a Certificate")
                    elif file_key not in secrets[secret].get("data", {}):
                        problem(cw, f"{key}: {setting}: Secret {secret!r} has no key {file_key!r}")
                elif "configMap" in vol:
                    cm = configmaps.get(vol["configMap"]["name"], {})
                    if file_key not in cm.get("data", {}):
                        problem(cw, f"{key}: {setting}: ConfigMap {vol['configMap']['name']!r} has no key {file_key!r}")
            # Variables from Secrets: a key of a rendered Secret, or of one
            # an operator writes.
            env = {e["name"]: e for e in c.get("env", [])}
            for e in env.values():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional") and not secret_has(ref["name"], ref["key"]):
                    problem(cw, f"env {e['name']}: Secret {ref['name']!r} (rendered or written by a CloudNativePG Cluster) has no key {ref['key']!r}")
            # More than one orchestrator replica needs the shared store: an
            # SQLite file is one per orchestrator.
            store = cfg.get("store", {})
            shared = "url" in store or "AGENTMESH_STORE__URL" in env
            if labels.get("app.kubernetes.io/component") == "orchestrator":
                if dep["spec"].get("replicas", 1) > 1 and not shared:
                    problem(where, "several replicas but no store.url: runs would live in one replica's memory or file")
                if shared and "path" in store:
                    problem(cw, f"{key}: store.path and store.url are both set")
            grace_ms = cfg.get("server", {}).get("shutdown_grace_ms", 20000)
            pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            needed = grace_ms / 1000 + pre_stop
            if spec.get("terminationGracePeriodSeconds", 30) <= needed:
                problem(where, f"terminationGracePeriodSeconds is not above {needed:g} s (preStop + shutdown_grace_ms)")
            tls_secret = next(
                (volumes[m["name"]]["secret"]["secretName"] for m in c.get("volumeMounts", [])
                 if "secret" in volumes.get(m["name"], {})
                 and volumes[m["name"]]["secret"]["secretName"] in cert_secrets),
                None,
            )
            pods[name] = (labels, ports, cfg, tls_secret)

    def pods_of(selector):
        return [(n, p) for n, p in pods.items() if selects(selector, p[0])]

    for name, svc in services.items():
        where = f"{overlay}/Service/{name}"
        backing = pods_of(svc["spec"].get("selector"))
        if not backing:
            problem(where, "selects no Deployment's pods")
        for sp in svc["spec"]["ports"]:
            target = sp.get("targetPort", sp["port"])
            for dep, (_, ports, _, _) in backing:
                if target not in ports and target not in ports.values():
                    problem(where, f"targetPort {target} is not a port of {dep}: {ports}")

    # The orchestrator dials every address a name resolves to on the port
    # the entry gives: that port must be the pods' own.
    for dep, (_, _, cfg, _) in pods.items():
        for entry in cfg.get("discovery", {}).get("dns", []):
            host, _, port = entry.rpartition(":")
            svc = services.get(host)
            where = f"{overlay}/Deployment/{dep}: discovery.dns {entry!r}"
            if svc is None:
                problem(where, "names no Service of this namespace")
                continue
            if svc["spec"].get("clusterIP") != "None":
                problem(where, "names a Service with a cluster IP: DNS would give one address, not one per replica")
            for backing, (_, ports, _, _) in pods_of(svc["spec"].get("selector")):
                if not port.isdigit() or int(port) not in ports.values():
                    problem(where, f"port {port} is not a port of {backing}'s pods: {ports}")

    # cert-manager objects (CRDs: no schema above checks them).
    for name, cert in certificates.items():
        where = f"{overlay}/Certificate/{name}"
        ref = cert["spec"].get("issuerRef", {})
        if ref.get("kind", "Issuer") != "Issuer" or ref.get("name") not in issuers:
            problem(where, f"issuerRef {ref} names no rendered Issuer")
    for name, issuer in issuers.items():
        ca = issuer["spec"].get("ca")
        if ca and not any(c["spec"]["secretName"] == ca["secretName"] and c["spec"].get("isCA")
                          for c in certificates.values()):
            problem(f"{overlay}/Issuer/{name}", f"its CA Secret {ca['secretName']!r} is written by no CA Certificate")
    # Mutual TLS: the orchestrator checks agents' certificates against
    # discovery.tls.domain, and agents take tasks from the identity of the
    # orchestrator's certificate (its first URI SAN, else DNS SAN).
    def certificate_of(dep):
        secret = pods.get(dep, (None, None, None, None))[3]
        return cert_secrets.get(secret)
    def identity(cert):
        spec = cert["spec"]
        return (spec.get("uris") or spec.get("dnsNames") or [spec.get("commonName")])[0]
    orchestrators = [d for d, p in pods.items() if p[0].get("app.kubernetes.io/component") == "orchestrator"]
    agents = [d for d, p in pods.items() if p[0].get("app.kubernetes.io/component") == "agent"]
    for orch in orchestrators:
        cfg = pods[orch][2]
        domain = dig(cfg, ("discovery", "tls", "domain"))
        orch_cert = certificate_of(orch)
        for agent in agents:
            agent_cfg = pods[agent][2]
            cert = certificate_of(agent)
            if domain and cert and domain not in cert["spec"].get("dnsNames", []):
                problem(f"{overlay}/Deployment/{agent}", f"its certificate lacks {domain!r}, which the orchestrator checks (discovery.tls.domain)")
            callers = dig(agent_cfg, ("server", "auth", "task_callers")) or []
            if callers and orch_cert and identity(orch_cert) not in callers:
                problem(f"{overlay}/Deployment/{agent}", f"server.auth.task_callers {callers} does not hold the orchestrator's identity {identity(orch_cert)!r}")
            if callers and dig(cfg, ("discovery", "tls", "cert")) is None and dig(cfg, ("discovery", "token_file")) is None:
                problem(f"{overlay}/Deployment/{orch}", "agents take tasks only from task_callers, but the orchestrator presents no certificate or token")
    # The dashboard uses only metrics the docs list.
    dashboards = [cm for cm in configmaps.values()
                  if cm["metadata"].get("labels", {}).get("grafana_dashboard")]
    if dashboards:
        import json, os, re
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, OPERATIONS_MD), encoding="utf-8") as f:
            documented = set(re.findall(r"`(agentmesh_[a-z_]+)`", f.read()))
        for cm in dashboards:
            for key, text in cm["data"].items():
                used = set()
                for panel in json.loads(text).get("panels", []):
                    for target in panel.get("targets", []):
                        used |= set(re.findall(r"agentmesh_[a-z_]+", target.get("expr", "")))
                base = {re.sub(r"_(bucket|count|sum)$", "", m) for m in used}
                for m in sorted(base - documented):
                    problem(f"{overlay}/ConfigMap/{cm['metadata']['name']}/{key}", f"uses {m}, which docs/OPERATIONS.md does not list")

    for name, cluster in cnpg_clusters.items():
        if cluster["spec"].get("instances", 1) < 2:
            problem(f"{overlay}/Cluster/{name}", "one instance: the run store would have no failover")
    cnpg_pods = [{"cnpg.io/cluster": name} for name in cnpg_clusters]
    for kind in ["PodDisruptionBudget", "NetworkPolicy"]:
        for name, obj in by_kind.get(kind, {}).items():
            sel = obj["spec"].get("selector", obj["spec"].get("podSelector", {}))
            if not pods_of(sel.get("matchLabels")) and not any(
                selects(sel.get("matchLabels"), labels) for labels in cnpg_pods
            ):
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
