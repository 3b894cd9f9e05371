#!/usr/bin/env python3
"""Cross-checks the container packaging of quorum-cache against the binary.

Run by tests/docker.rs (test `kubernetes_and_compose_files_agree_with_the_binary`):

    check_manifests.py --help-text FILE --repo DIR [--require-schema] [--skip-schema]

FILE holds the output of `quorum-cache --help` (its ENVIRONMENT section names every
variable the binary reads, with its default). DIR holds deploy/kubernetes/*.yaml,
docker-compose.yml and Dockerfile. Checks:

- Kubernetes: every document validates against the Kubernetes OpenAPI schemas
  (strict: unknown fields are errors) for the oldest and newest versions that the
  `kubernetes-validate` package bundles from 1.27 on (gRPC probes are GA since
  1.27); offline, the schemas ship inside the package. Without the package the
  schema check is skipped with a loud message, or fails with --require-schema.
- Every environment variable given to the binary is one it reads; the only other
  names allowed are downward-API helpers that another value uses as $(NAME).
- PEERS holds exactly the ADDR of every pod (or Compose service), and each ADDR is
  <statefulset>-<i>.<headless service>:<port>: the name the others dial.
- The StatefulSet's serviceName is the headless Service (clusterIP None,
  publishNotReadyAddresses), the Services, the PodDisruptionBudget and the pod
  template select the same labels, the PDB keeps a majority, pods start in
  Parallel (a lone node is never ready, so OrderedReady would never start pod 1).
- Ports: the gRPC containerPort is ADDR's port, the Services target it, the gRPC
  readiness probe asks it, the HTTP liveness probe asks the metrics port
  (METRICS_ADDR or ADDR's port + 1000) for /healthz.
- terminationGracePeriodSeconds (Compose: stop_grace_period) > SHUTDOWN_TIMEOUT.
- The Dockerfile: RUST_IMAGE and RUNTIME_IMAGE build args, the runtime-prebuilt and
  runtime stages, a numeric non-root USER, EXPOSE of the gRPC and metrics ports, a
  HEALTHCHECK running `quorum-cache health`, an exec-form ENTRYPOINT.

Prints one line per problem and exits 1 when there is any, else prints a summary
and exits 0.
"""

import argparse
import glob
import json
import os
import re
import sys

import yaml

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


def parse_help(text):
    """Variable names and defaults from the ENVIRONMENT section of --help."""
    names, defaults = [], {}
    in_env, last = False, None
    for line in text.splitlines():
        if line.startswith("ENVIRONMENT"):
            in_env = True
            continue
        if not in_env:
            continue
        m = re.match(r"^  ([A-Z][A-Z0-9_]*)(\s{2,}|$)", line)
        if m:
            last = m.group(1)
            names.append(last)
            continue
        m = re.match(r"^\s+default:\s*(.*)$", line)
        if m and last:
            defaults[last] = m.group(1).strip()
    return names, defaults


def port_of(addr, where):
    """The port of host:port; a missing port means 8080 (as the binary reads it)."""
    if ":" not in addr:
        return 8080
    host, _, port = addr.rpartition(":")
    try:
        return int(port)
    except ValueError:
        problem(where, f"address {addr!r} has no numeric port")
        return None


def normalise(addr):
    return addr if ":" in addr else f"{addr}:8080"


def seconds(value, where, name):
    """Seconds from '8', '8s', '500ms', '1m30s' (Compose durations too)."""
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    total, matched = 0.0, ""
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
        matched += number + unit
    if matched != text:
        problem(where, f"{name}={value!r} is not a duration")
        return None
    return total


def effective_shutdown_timeout(env, defaults, where):
    value = env.get("SHUTDOWN_TIMEOUT", defaults.get("SHUTDOWN_TIMEOUT"))
    if value is None:
        problem(where, "no SHUTDOWN_TIMEOUT and --help gives no default")
        return None
    return seconds(value, where, "SHUTDOWN_TIMEOUT")


def check_env_names(env_list, known, where):
    """env_list: [(name, value or None, from_downward_api)]"""
    values = " ".join(v for _, v, _ in env_list if isinstance(v, str))
    for name, _, downward in env_list:
        if name in known:
            continue
        if downward and f"$({name})" in values:
            continue  # a helper, expanded by Kubernetes into another value
        problem(where, f"environment variable {name} is not one the binary reads (see quorum-cache --help)")


def expand(value, variables):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: variables.get(m.group(1), m.group(0)), value)


# ---------------------------------------------------------------------------- k8s

def schema_check(docs, require, skip):
    if skip:
        return []
    try:
        import kubernetes_validate
    except ImportError:
        message = "kubernetes-validate is not installed (pip install kubernetes-validate): schema check skipped"
        if require:
            problem("schema", message)
        else:
            print("!" * 78, file=sys.stderr)
            print("!!! " + message, file=sys.stderr)
            print("!" * 78, file=sys.stderr)
        return []
    base = os.path.join(os.path.dirname(kubernetes_validate.__file__), "kubernetes-json-schema")
    bundled = sorted(
        {m.group(1) for d in os.listdir(base) if (m := re.fullmatch(r"v(\d+\.\d+\.\d+)-local-strict", d))},
        key=lambda v: tuple(int(x) for x in v.split(".")),
    )
    usable = [v for v in bundled if tuple(int(x) for x in v.split(".")) >= (1, 27, 0)]
    if not usable:
        problem("schema", f"kubernetes-validate bundles no schema from 1.27 on (has {bundled})")
        return []
    versions = sorted({usable[0], usable[-1]}, key=lambda v: tuple(int(x) for x in v.split(".")))
    for path, doc in docs:
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except Exception as error:  # ValidationError, SchemaNotFoundError, ...
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                problem(f"{path} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}",
                        f"not valid for Kubernetes {version}: {first}")
    return versions


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_kubernetes(repo, known, defaults, require_schema, skip_schema):
    files = sorted(glob.glob(os.path.join(repo, "deploy", "kubernetes", "*.yaml")))
    if not files:
        problem("deploy/kubernetes", "no *.yaml files")
        return {}
    docs = []
    for path in files:
        rel = os.path.relpath(path, repo)
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc is None:
                    continue
                if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                    problem(rel, "a document without kind/apiVersion")
                    continue
                docs.append((rel, doc))
    versions = schema_check(docs, require_schema, skip_schema)

    def of_kind(kind):
        return [(p, d) for p, d in docs if d["kind"] == kind]

    statefulsets, services, pdbs = of_kind("StatefulSet"), of_kind("Service"), of_kind("PodDisruptionBudget")
    if len(statefulsets) != 1:
        problem("deploy/kubernetes", f"expected one StatefulSet, found {len(statefulsets)}")
        return {"schema_versions": versions}
    sts_path, sts = statefulsets[0]
    where = f"{sts_path} StatefulSet/{sts['metadata']['name']}"
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    replicas = spec.get("replicas", 1)
    if replicas < 3 or replicas % 2 == 0:
        problem(where, f"replicas is {replicas}; use an odd number of at least 3")
    majority = replicas // 2 + 1
    if spec.get("podManagementPolicy") != "Parallel":
        problem(where, "podManagementPolicy must be Parallel: a node is ready only with a quorum, "
                       "so OrderedReady would wait for pod 0 forever")
    pod_labels = spec["template"].get("metadata", {}).get("labels", {})
    if not selects(spec.get("selector", {}).get("matchLabels", {}), pod_labels):
        problem(where, "the selector does not select the pod template's labels")

    headless = [(p, s) for p, s in services if s["spec"].get("clusterIP") == "None"]
    clients = [(p, s) for p, s in services if s["spec"].get("clusterIP") != "None"]
    headless_name = spec.get("serviceName")
    governing = [s for _, s in headless if s["metadata"]["name"] == headless_name]
    if not governing:
        problem(where, f"serviceName {headless_name!r} is not a headless Service (clusterIP: None) of these files")
    for svc in governing:
        if svc["spec"].get("publishNotReadyAddresses") is not True:
            problem(f"Service/{headless_name}", "publishNotReadyAddresses must be true: peers must resolve "
                                                "each other before any is ready")
    if not clients:
        problem("deploy/kubernetes", "no client Service (one that is not headless)")
    for path, svc in services:
        if not selects(svc["spec"].get("selector", {}), pod_labels):
            problem(f"{path} Service/{svc['metadata']['name']}", "its selector does not select the pods")
    if len(pdbs) != 1:
        problem("deploy/kubernetes", f"expected one PodDisruptionBudget, found {len(pdbs)}")
    for path, pdb in pdbs:
        w = f"{path} PodDisruptionBudget/{pdb['metadata']['name']}"
        if not selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), pod_labels):
            problem(w, "its selector does not select the pods")
        min_available, max_unavailable = pdb["spec"].get("minAvailable"), pdb["spec"].get("maxUnavailable")
        if isinstance(min_available, int):
            if min_available < majority:
                problem(w, f"minAvailable {min_available} < majority {majority} of {replicas}")
        elif isinstance(max_unavailable, int):
            if replicas - max_unavailable < majority:
                problem(w, f"maxUnavailable {max_unavailable} leaves less than a majority of {replicas}")
        else:
            problem(w, "give minAvailable or maxUnavailable as a number of pods")

    pod = spec["template"]["spec"]
    containers = pod.get("containers", [])
    ours = [c for c in containers if "quorum-cache" in c.get("image", "")]
    if len(ours) != 1:
        problem(where, "expected one container running a quorum-cache image")
        return {"schema_versions": versions}
    c = ours[0]
    cw = f"{where} container {c['name']}"
    env_list = [(e["name"], e.get("value"), "fieldRef" in e.get("valueFrom", {})) for e in c.get("env", [])]
    check_env_names(env_list, known, cw)
    env = {n: v for n, v, _ in env_list if v is not None}
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    port_numbers = set(ports.values())

    def resolve(port):
        return ports.get(port) if isinstance(port, str) else port

    # ADDR of each pod, as the downward API fills it in.
    downward = {n for n, _, d in env_list if d}
    addrs = []
    for i in range(replicas):
        variables = {n: f"{name}-{i}" for n in downward}
        raw = env.get("ADDR")
        if raw is None:
            problem(cw, "no ADDR: every node would call itself localhost:8080")
            break
        addrs.append(normalise(expand(raw, variables)))
    grpc_port = None
    if addrs:
        grpc_port = port_of(addrs[0], cw)
        for i, addr in enumerate(addrs):
            host = addr.rpartition(":")[0]
            labels = host.split(".")
            if len(labels) < 2 or labels[0] != f"{name}-{i}" or labels[1] != headless_name:
                problem(cw, f"pod {i}'s ADDR is {addr!r}; it must be {name}-{i}.{headless_name}[...]:port, "
                            "the name its peers dial")
        peers = [normalise(p.strip()) for p in expand(env.get("PEERS", ""), {}).split(",") if p.strip()]
        if sorted(set(peers)) != sorted(set(addrs)):
            problem(cw, f"PEERS {sorted(set(peers))} is not the set of the pods' ADDRs {sorted(set(addrs))}")
        if grpc_port not in port_numbers:
            problem(cw, f"ADDR's port {grpc_port} is not a containerPort ({sorted(port_numbers)})")
        for path, svc in services:
            for p in svc["spec"].get("ports", []):
                if p.get("name") == "grpc" and resolve(p.get("targetPort", p["port"])) != grpc_port:
                    problem(f"{path} Service/{svc['metadata']['name']}", f"port grpc targets "
                            f"{p.get('targetPort')}, not the gRPC port {grpc_port}")

    metrics_addr = env.get("METRICS_ADDR")
    metrics_port = None
    if metrics_addr is None and grpc_port is not None:
        metrics_port = grpc_port + 1000
    elif metrics_addr:
        metrics_port = port_of(metrics_addr, cw)

    readiness, liveness = c.get("readinessProbe"), c.get("livenessProbe")
    if not readiness:
        problem(cw, "no readinessProbe")
    elif "grpc" not in readiness:
        problem(cw, "the readinessProbe is not a gRPC health probe")
    elif readiness["grpc"].get("port") != grpc_port:
        problem(cw, f"the readinessProbe asks port {readiness['grpc'].get('port')}, the gRPC port is {grpc_port}")
    if not liveness:
        problem(cw, "no livenessProbe")
    else:
        if "grpc" in liveness:
            problem(cw, "the livenessProbe asks gRPC health, which is NOT_SERVING whenever quorum is lost: "
                        "every pod would be restarted (and emptied) then")
        if "httpGet" in liveness:
            port = resolve(liveness["httpGet"].get("port"))
            if port not in port_numbers:
                problem(cw, f"the livenessProbe's port {liveness['httpGet'].get('port')} is no containerPort")
            if port != metrics_port:
                problem(cw, f"the livenessProbe asks port {port}; /healthz is on the metrics port {metrics_port}")
            if liveness["httpGet"].get("path") != "/healthz":
                problem(cw, "the livenessProbe must ask /healthz")
        elif "tcpSocket" in liveness and resolve(liveness["tcpSocket"].get("port")) not in port_numbers:
            problem(cw, "the livenessProbe's port is no containerPort")
        elif "exec" in liveness:
            problem(cw, "an exec liveness probe on `quorum-cache health` has the quorum problem of gRPC health")

    shutdown = effective_shutdown_timeout(env, defaults, cw)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if shutdown is not None and not grace > shutdown:
        problem(where, f"terminationGracePeriodSeconds {grace} is not above SHUTDOWN_TIMEOUT {shutdown:g}")
    n = env.get("REPLICATION_FACTOR", defaults.get("REPLICATION_FACTOR", "3"))
    if str(n).isdigit() and int(n) > replicas:
        problem(cw, f"REPLICATION_FACTOR {n} > replicas {replicas}")
    return {"schema_versions": versions, "replicas": replicas, "addrs": addrs}


# ------------------------------------------------------------------------ compose

def check_compose(repo, known, defaults):
    path = os.path.join(repo, "docker-compose.yml")
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = dict(doc.get("services") or {})
    if len(services) < 3:
        problem("docker-compose.yml", f"{len(services)} services; a quorum needs three")
    envs = {}
    for svc_name, svc in services.items():
        raw_env = svc.get("environment") or {}
        if isinstance(raw_env, list):
            raw_env = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw_env)
        envs[svc_name] = {k: (str(v) if v is not None else None) for k, v in raw_env.items()}
    addrs = {s: normalise(e["ADDR"]) for s, e in envs.items() if e.get("ADDR")}
    for svc_name, svc in services.items():
        where = f"docker-compose.yml service {svc_name}"
        env = envs[svc_name]
        check_env_names([(k, v, False) for k, v in env.items()], known, where)
        addr = addrs.get(svc_name)
        if not addr:
            problem(where, "no ADDR")
            continue
        if addr.rpartition(":")[0] != svc_name:
            problem(where, f"ADDR {addr!r} is not the service name, which is what the network resolves")
        peers = {normalise(p.strip()) for p in (env.get("PEERS") or "").split(",") if p.strip()}
        others = set(addrs.values()) - {addr}
        if peers - {addr} != others:
            problem(where, f"PEERS {sorted(peers)} is not the other nodes' ADDRs {sorted(others)}")
        grpc_port = port_of(addr, where)
        published = [str(p) for p in svc.get("ports", [])]
        if published and not all(re.search(rf"(^|:){grpc_port}(/tcp)?$", p) for p in published):
            problem(where, f"a published port does not map to the gRPC port {grpc_port}: {published}")
        shutdown = effective_shutdown_timeout(env, defaults, where)
        grace = seconds(svc.get("stop_grace_period", "10s"), where, "stop_grace_period")
        if shutdown is not None and grace is not None and not grace > shutdown:
            problem(where, f"stop_grace_period {grace:g}s is not above SHUTDOWN_TIMEOUT {shutdown:g}s")
        if not re.fullmatch(r"\$\{QC_IMAGE:-[^}]+\}", str(svc.get("image", ""))):
            problem(where, f"image {svc.get('image')!r} is not overridable with ${{QC_IMAGE:-...}}")
    entry_points = [name for name, svc in services.items() if svc.get("ports")]
    if len(entry_points) != 1:
        problem("docker-compose.yml", f"one node publishes the gRPC port, not {entry_points}")
    return {"services": sorted(services)}


# --------------------------------------------------------------------- Dockerfile

def check_dockerfile(repo):
    path = os.path.join(repo, "Dockerfile")
    text = open(path).read()
    # Join continuation lines, drop comments.
    lines, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages, by_stage, current_stage = [], {}, None
    global_args = set()
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            current_stage = (m.group(2) or str(len(stages))).lower()
            stages.append((current_stage, m.group(1)))
            by_stage[current_stage] = []
        elif current_stage is None:
            if word == "ARG":
                global_args.add(rest.split("=")[0].strip())
        else:
            by_stage[current_stage].append((word, rest))
    where = "Dockerfile"
    for arg in ("RUST_IMAGE", "RUNTIME_IMAGE"):
        if arg not in global_args:
            problem(where, f"no global ARG {arg}")
    names = [s for s, _ in stages]
    for needed in ("runtime-base", "runtime-prebuilt", "builder", "runtime"):
        if needed not in names:
            problem(where, f"no stage {needed}")
    if names and names[-1] != "runtime":
        problem(where, "the last (default) stage is not runtime")
    if "runtime-prebuilt" in names and "builder" in names and names.index("runtime-prebuilt") > names.index("builder"):
        problem(where, "runtime-prebuilt must come before builder (the legacy builder runs every earlier stage)")
    instructions = by_stage.get("runtime-base", [])
    users = [r for w, r in instructions if w == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1].strip()):
        problem(where, f"runtime-base's USER must be numeric and not 0, is {users}")
    exposed = " ".join(r for w, r in instructions if w == "EXPOSE").split()
    for port in ("8080", "9080"):
        if port not in exposed and f"{port}/tcp" not in exposed:
            problem(where, f"EXPOSE lacks {port}")
    health = [r for w, r in instructions if w == "HEALTHCHECK"]
    if not health or not re.search(r'CMD\s+\[\s*"(/usr/local/bin/)?quorum-cache"\s*,\s*"health"', health[-1]):
        problem(where, f"HEALTHCHECK does not run quorum-cache health: {health}")
    entry = [r for w, r in instructions if w == "ENTRYPOINT"]
    try:
        parsed = json.loads(entry[-1]) if entry else None
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or not parsed or not parsed[0].endswith("quorum-cache"):
        problem(where, f"ENTRYPOINT must be the exec form running quorum-cache (PID 1 gets SIGTERM): {entry}")
    return {"stages": names}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--help-text", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--require-schema", action="store_true")
    parser.add_argument("--skip-schema", action="store_true", help="only the cross-checks (faster)")
    args = parser.parse_args()
    names, defaults = parse_help(open(args.help_text).read())
    if len(names) < 5 or "ADDR" not in names or "PEERS" not in names:
        problem("--help", f"could not read the variables from the help text (found {names})")
    known = set(names)
    k8s = check_kubernetes(args.repo, known, defaults, args.require_schema, args.skip_schema)
    compose = check_compose(args.repo, known, defaults)
    dockerfile = check_dockerfile(args.repo)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print(f"ok: {len(known)} variables known; Kubernetes schemas checked for "
          f"{k8s.get('schema_versions') or 'none (skipped or not installed)'}; pods {k8s.get('addrs')}; "
          f"compose services {compose['services']}; Dockerfile stages {dockerfile['stages']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
