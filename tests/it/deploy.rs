//! `deploy/` is checked without docker or helm: every YAML file parses, the Helm chart is
//! rendered by a small renderer for the template subset the chart uses (values, includes,
//! `if`/`else`, `toYaml`, `quote`, `nindent`) and the result validated as Kubernetes objects,
//! and every environment variable the manifests set is one the binaries read.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

fn repo() -> PathBuf {
    switchyard_e2e::crate_dir().join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn load(text: &str, what: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}\n{text}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn get<'a>(y: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('.').fold(y, |y, k| &y[k])
}

fn str_at<'a>(y: &'a Yaml, path: &str) -> &'a str {
    get(y, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string in {y:?}"))
}

/// Every `SWITCHYARD_*` / `OTEL_*` variable the binaries read, from their sources.
fn known_env_vars() -> BTreeSet<String> {
    let mut sources = String::new();
    for dir in ["control-plane/src", "data-plane/src"] {
        collect_sources(&repo().join(dir), &mut sources);
    }
    // String literals only: `"SWITCHYARD_…"`.
    sources
        .split("\"SWITCHYARD_")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.split('"').next()?;
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_')
                .then(|| format!("SWITCHYARD_{name}"))
        })
        .collect()
}

fn collect_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn env_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("SWITCHYARD_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_uppercase() || bytes[end] == b'_') {
            end += 1;
        }
        names.insert(text[start..end].to_owned());
        i = end;
    }
    names
}

// ---------------------------------------------------------------------------------------
// A renderer for the Go-template subset the chart uses.

#[derive(Debug)]
enum Node {
    Text(String),
    Action(String),
    If(String, Vec<Node>, Vec<Node>),
}

struct Chart {
    values: Yaml,
    chart: Yaml,
    release: &'static str,
    defines: HashMap<String, Vec<Node>>,
}

/// Splits into text and actions, applying `{{-` / `-}}` whitespace trimming.
fn tokenize(src: &str) -> Vec<(bool, String)> {
    let mut out: Vec<(bool, String)> = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_owned();
        if trim_next {
            text = text.trim_start().to_owned();
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .unwrap_or_else(|| panic!("unbalanced `{{{{` near: {}", &rest[open..]));
        let mut action = &after[..close];
        if let Some(a) = action.strip_prefix('-') {
            text = text.trim_end().to_owned();
            action = a;
        }
        trim_next = false;
        if let Some(a) = action.strip_suffix('-') {
            trim_next = true;
            action = a;
        }
        out.push((false, text));
        out.push((true, action.trim().to_owned()));
        rest = &after[close + 2..];
    }
    assert!(!rest.contains("}}"), "unbalanced `}}}}` near: {rest}");
    let text = if trim_next { rest.trim_start() } else { rest };
    out.push((false, text.to_owned()));
    out
}

/// Builds the tree; `define` blocks go to `defines`.
fn parse(
    tokens: &mut std::vec::IntoIter<(bool, String)>,
    defines: &mut HashMap<String, Vec<Node>>,
) -> (Vec<Node>, Option<String>) {
    let mut nodes = Vec::new();
    while let Some((is_action, text)) = tokens.next() {
        if !is_action {
            if !text.is_empty() {
                nodes.push(Node::Text(text));
            }
            continue;
        }
        if text.starts_with("/*") {
            continue;
        }
        if let Some(cond) = text.strip_prefix("if ") {
            let (then, end) = parse(tokens, defines);
            let otherwise = if end.as_deref() == Some("else") {
                let (otherwise, end) = parse(tokens, defines);
                assert_eq!(end.as_deref(), Some("end"), "`if {cond}` is not closed");
                otherwise
            } else {
                assert_eq!(end.as_deref(), Some("end"), "`if {cond}` is not closed");
                Vec::new()
            };
            nodes.push(Node::If(cond.trim().to_owned(), then, otherwise));
        } else if let Some(name) = text.strip_prefix("define ") {
            let (body, end) = parse(tokens, defines);
            assert_eq!(end.as_deref(), Some("end"), "`define {name}` is not closed");
            defines.insert(name.trim().trim_matches('"').to_owned(), body);
        } else if text == "else" || text == "end" {
            return (nodes, Some(text));
        } else {
            nodes.push(Node::Action(text));
        }
    }
    (nodes, None)
}

impl Chart {
    fn load(values: Yaml) -> Chart {
        let dir = repo().join("deploy/helm/switchyard");
        let chart = load(&read("deploy/helm/switchyard/Chart.yaml"), "Chart.yaml").remove(0);
        let mut defines = HashMap::new();
        let helpers = std::fs::read_to_string(dir.join("templates/_helpers.tpl")).unwrap();
        let (_, end) = parse(&mut tokenize(&helpers).into_iter(), &mut defines);
        assert!(end.is_none(), "_helpers.tpl: stray `{end:?}`");
        Chart {
            values,
            chart,
            release: "rel",
            defines,
        }
    }

    fn render(&self, template: &str, errors: &mut Vec<String>) -> String {
        let mut defines = HashMap::new();
        let (nodes, end) = parse(&mut tokenize(template).into_iter(), &mut defines);
        assert!(end.is_none(), "stray `{end:?}`");
        let mut out = String::new();
        self.eval(&nodes, &mut out, errors);
        out
    }

    fn eval(&self, nodes: &[Node], out: &mut String, errors: &mut Vec<String>) {
        for node in nodes {
            match node {
                Node::Text(t) => out.push_str(t),
                Node::If(cond, then, otherwise) => {
                    let v = self.pipeline(cond, errors);
                    let branch = if truthy(&v) { then } else { otherwise };
                    self.eval(branch, out, errors);
                }
                Node::Action(a) => out.push_str(&scalar(&self.pipeline(a, errors))),
            }
        }
    }

    fn pipeline(&self, action: &str, errors: &mut Vec<String>) -> Yaml {
        let mut stages = action.split('|').map(str::trim);
        let first = stages.next().unwrap_or_default();
        let mut value = self.command(first, errors);
        for stage in stages {
            let mut words = stage.split_whitespace();
            value = match (words.next(), words.next()) {
                (Some("quote"), None) => Yaml::String(format!("{:?}", scalar(&value))),
                (Some("nindent"), Some(n)) => {
                    Yaml::String(format!("\n{}", indent(&scalar(&value), n.parse().unwrap())))
                }
                (Some("indent"), Some(n)) => {
                    Yaml::String(indent(&scalar(&value), n.parse().unwrap()))
                }
                _ => panic!(
                    "unsupported template function `{stage}` (extend the renderer in tests/it/deploy.rs)"
                ),
            };
        }
        value
    }

    fn command(&self, command: &str, errors: &mut Vec<String>) -> Yaml {
        let words: Vec<&str> = command.split_whitespace().collect();
        match words.as_slice() {
            ["include", name, "."] => {
                let name = name.trim_matches('"');
                let body = self
                    .defines
                    .get(name)
                    .unwrap_or_else(|| panic!("`include {name}`: no such define"));
                let mut out = String::new();
                self.eval(body, &mut out, errors);
                Yaml::String(out)
            }
            ["toYaml", path] => {
                let v = self.lookup(path, errors);
                let mut text = String::new();
                YamlEmitter::new(&mut text).dump(&v).unwrap();
                let text = text.strip_prefix("---").unwrap_or(&text);
                Yaml::String(text.strip_prefix([' ', '\n']).unwrap_or(text).to_owned())
            }
            [path] if path.starts_with('.') => self.lookup(path, errors),
            _ => panic!(
                "unsupported template action `{command}` (extend the renderer in tests/it/deploy.rs)"
            ),
        }
    }

    fn lookup(&self, path: &str, errors: &mut Vec<String>) -> Yaml {
        let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
        match parts.as_slice() {
            ["Values", rest @ ..] => {
                let mut v = &self.values;
                for part in rest {
                    v = &v[*part];
                }
                if v.is_badvalue() {
                    errors.push(format!("`{path}` is not in values.yaml"));
                    return Yaml::Null;
                }
                v.clone()
            }
            ["Release", "Name"] => Yaml::String(self.release.to_owned()),
            ["Release", "Namespace"] => Yaml::String("default".to_owned()),
            ["Chart", "AppVersion"] => self.chart["appVersion"].clone(),
            ["Chart", "Version"] => self.chart["version"].clone(),
            ["Chart", "Name"] => self.chart["name"].clone(),
            _ => panic!("unsupported reference `{path}`"),
        }
    }
}

fn truthy(v: &Yaml) -> bool {
    match v {
        Yaml::Null | Yaml::BadValue => false,
        Yaml::Boolean(b) => *b,
        Yaml::String(s) => !s.is_empty(),
        Yaml::Integer(i) => *i != 0,
        Yaml::Array(a) => !a.is_empty(),
        Yaml::Hash(h) => !h.is_empty(),
        _ => true,
    }
}

fn scalar(v: &Yaml) -> String {
    match v {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null | Yaml::BadValue => String::new(),
        other => panic!("cannot print {other:?} without toYaml"),
    }
}

fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders every template with `values` and returns the Kubernetes objects.
fn render_chart(values: Yaml) -> Vec<Yaml> {
    let chart = Chart::load(values);
    let dir = repo().join("deploy/helm/switchyard/templates");
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "templates missing: {names:?}");
    for path in names {
        let rendered = chart.render(&std::fs::read_to_string(&path).unwrap(), &mut errors);
        objects.extend(load(&rendered, &path.display().to_string()));
    }
    assert!(errors.is_empty(), "{errors:#?}");
    objects
}

fn values_with(overrides: &[(&str, Yaml)]) -> Yaml {
    let mut values = load(&read("deploy/helm/switchyard/values.yaml"), "values.yaml").remove(0);
    for (path, v) in overrides {
        let parts: Vec<&str> = path.split('.').collect();
        let mut node = &mut values;
        for part in &parts[..parts.len() - 1] {
            let Yaml::Hash(h) = node else {
                panic!("{path}")
            };
            node = h.get_mut(&Yaml::String((*part).to_owned())).unwrap();
        }
        let Yaml::Hash(h) = node else {
            panic!("{path}")
        };
        h.insert(Yaml::String(parts[parts.len() - 1].to_owned()), v.clone());
    }
    values
}

fn of_kind<'a>(objects: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    objects
        .iter()
        .filter(|o| o["kind"].as_str() == Some(kind))
        .collect()
}

fn named<'a>(objects: &'a [Yaml], kind: &str, suffix: &str) -> &'a Yaml {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| str_at(o, "metadata.name").ends_with(suffix))
        .unwrap_or_else(|| panic!("no {kind} named *{suffix}"))
}

fn labels_match(selector: &Yaml, labels: &Yaml) -> bool {
    let Some(selector) = selector.as_hash() else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| &labels[k.as_str().unwrap()] == v)
}

#[test]
fn helm_chart_renders_to_valid_kubernetes_objects() {
    let objects = render_chart(values_with(&[]));
    let env_vars = known_env_vars();
    for object in &objects {
        assert!(object["apiVersion"].as_str().is_some(), "{object:?}");
        assert!(!str_at(object, "metadata.name").is_empty());
    }
    let secret = named(&objects, "Secret", "switchyard");
    for key in ["database-url", "node-token"] {
        assert!(
            !get(secret, "stringData")[key].is_badvalue(),
            "secret lacks {key}"
        );
    }
    let deployments = of_kind(&objects, "Deployment");
    assert_eq!(deployments.len(), 2);
    for deployment in &deployments {
        let name = str_at(deployment, "metadata.name");
        let pod = get(deployment, "spec.template");
        assert!(labels_match(
            get(deployment, "spec.selector.matchLabels"),
            get(pod, "metadata.labels")
        ));
        assert_eq!(
            get(pod, "spec.securityContext.runAsNonRoot").as_bool(),
            Some(true)
        );
        let container = &get(pod, "spec.containers")[0];
        assert!(str_at(container, "image").contains(':'), "{name}: image");
        assert_eq!(str_at(container, "livenessProbe.httpGet.path"), "/healthz");
        assert_eq!(str_at(container, "readinessProbe.httpGet.path"), "/readyz");
        let port_names: Vec<&str> = container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(port_names.contains(&str_at(container, "readinessProbe.httpGet.port")));
        assert_eq!(
            get(container, "securityContext.readOnlyRootFilesystem").as_bool(),
            Some(true)
        );
        assert!(!get(container, "resources.requests.cpu").is_badvalue());
        for env in container["env"].as_vec().unwrap() {
            let var = str_at(env, "name");
            assert!(
                env_vars.contains(var),
                "{name}: {var} is not read by the binary"
            );
            let secret_ref = get(env, "valueFrom.secretKeyRef");
            if !secret_ref.is_badvalue() {
                assert_eq!(secret_ref["name"], secret["metadata"]["name"], "{var}");
                let key = str_at(secret_ref, "key");
                assert!(
                    !get(secret, "stringData")[key].is_badvalue(),
                    "{var}: {key}"
                );
            }
        }
        let mounts = container["volumeMounts"].as_vec().unwrap();
        let volumes = get(pod, "spec.volumes").as_vec().unwrap();
        for mount in mounts {
            assert!(volumes.iter().any(|v| v["name"] == mount["name"]));
        }
    }
    let gateway = named(&objects, "Deployment", "-gateway");
    assert!(
        get(gateway, "spec.replicas").is_badvalue(),
        "the HPA owns the replica count"
    );
    let grace = get(gateway, "spec.template.spec.terminationGracePeriodSeconds")
        .as_i64()
        .unwrap();
    let gateway_env = get(gateway, "spec.template.spec.containers")[0]["env"]
        .as_vec()
        .unwrap();
    let drain: i64 = gateway_env
        .iter()
        .find(|e| e["name"].as_str() == Some("SWITCHYARD_DRAIN_SECONDS"))
        .map(|e| str_at(e, "value").parse().unwrap())
        .unwrap();
    assert!(
        grace >= drain + 10,
        "grace period {grace} s vs drain {drain} s"
    );
    let control_plane_url = gateway_env
        .iter()
        .find(|e| e["name"].as_str() == Some("SWITCHYARD_CONTROL_PLANE"))
        .map(|e| str_at(e, "value"))
        .unwrap();
    let cp_service = named(&objects, "Service", "-control-plane");
    assert_eq!(
        control_plane_url,
        format!("http://{}:50051", str_at(cp_service, "metadata.name"))
    );

    for service in of_kind(&objects, "Service") {
        let selector = get(service, "spec.selector");
        assert!(
            deployments
                .iter()
                .any(|d| labels_match(selector, get(d, "spec.template.metadata.labels"))),
            "service {} selects no pods",
            str_at(service, "metadata.name")
        );
    }
    let hpa = named(&objects, "HorizontalPodAutoscaler", "-gateway");
    assert_eq!(
        get(hpa, "spec.scaleTargetRef.name"),
        &gateway["metadata"]["name"]
    );
    assert!(get(hpa, "spec.maxReplicas").as_i64() > get(hpa, "spec.minReplicas").as_i64());
    for pdb in of_kind(&objects, "PodDisruptionBudget") {
        assert!(
            deployments.iter().any(|d| labels_match(
                get(pdb, "spec.selector.matchLabels"),
                get(d, "spec.template.metadata.labels")
            )),
            "PDB selects no pods"
        );
    }
    assert_eq!(of_kind(&objects, "PodDisruptionBudget").len(), 2);
    assert!(
        of_kind(&objects, "ServiceMonitor").is_empty(),
        "off by default"
    );
}

#[test]
fn helm_chart_options_render() {
    let objects = render_chart(values_with(&[
        ("gateway.autoscaling.enabled", Yaml::Boolean(false)),
        ("serviceMonitor.enabled", Yaml::Boolean(true)),
        ("secrets.existingSecret", Yaml::String("my-secrets".into())),
        (
            "imagePullSecrets",
            load("- name: regcred", "pull secrets").remove(0),
        ),
    ]));
    assert!(of_kind(&objects, "Secret").is_empty());
    assert!(of_kind(&objects, "HorizontalPodAutoscaler").is_empty());
    let gateway = named(&objects, "Deployment", "-gateway");
    assert_eq!(get(gateway, "spec.replicas").as_i64(), Some(2));
    assert_eq!(
        get(gateway, "spec.template.spec.imagePullSecrets")[0]["name"].as_str(),
        Some("regcred")
    );
    let env = get(gateway, "spec.template.spec.containers")[0]["env"]
        .as_vec()
        .unwrap();
    let token = env
        .iter()
        .find(|e| e["name"].as_str() == Some("SWITCHYARD_NODE_TOKEN"))
        .unwrap();
    assert_eq!(str_at(token, "valueFrom.secretKeyRef.name"), "my-secrets");
    let monitor = &of_kind(&objects, "ServiceMonitor")[0];
    let endpoint = &get(monitor, "spec.endpoints")[0];
    assert_eq!(str_at(endpoint, "path"), "/metrics");
    for service in of_kind(&objects, "Service") {
        assert!(labels_match(
            get(monitor, "spec.selector.matchLabels"),
            get(service, "metadata.labels")
        ));
        let ports = get(service, "spec.ports").as_vec().unwrap();
        assert!(ports.iter().any(|p| p["name"] == endpoint["port"]));
    }
}

#[test]
fn chart_metadata_and_values_are_complete() {
    let chart = load(&read("deploy/helm/switchyard/Chart.yaml"), "Chart.yaml").remove(0);
    assert_eq!(str_at(&chart, "apiVersion"), "v2");
    assert_eq!(str_at(&chart, "name"), "switchyard");
    let cargo = read("Cargo.toml");
    let version = str_at(&chart, "appVersion");
    assert!(
        cargo.contains(&format!("version = \"{version}\"")),
        "appVersion {version} differs from the workspace version"
    );
    let values = load(&read("deploy/helm/switchyard/values.yaml"), "values.yaml").remove(0);
    for secret in [
        "databaseUrl",
        "nodeToken",
        "bootstrapManagementKey",
        "bootstrapApiKey",
    ] {
        assert_eq!(
            values["secrets"][secret].as_str(),
            Some(""),
            "no secret default may ship in values.yaml"
        );
    }
    assert_eq!(values["allowPrivateUpstreams"].as_bool(), Some(false));
}

/// Resolves YAML merge keys (`<<: *anchor`), which YAML 1.2 parsers leave as plain keys.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into()))
                && let Yaml::Hash(base) = merged(base)
            {
                out.extend(base);
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

#[test]
fn compose_file_is_complete_and_consistent() {
    let text = read("deploy/compose.yaml");
    let compose = merged(&load(&text, "compose.yaml").remove(0));
    let services = &compose["services"];
    let dockerfile = read("deploy/Dockerfile");
    let env_vars = known_env_vars();
    let example = read("deploy/.env.example");
    for name in [
        "postgres",
        "redis",
        "control-plane",
        "gateway-1",
        "gateway-2",
    ] {
        assert!(!services[name].is_badvalue(), "service {name} missing");
    }
    for name in ["control-plane", "gateway-1", "gateway-2"] {
        let service = &services[name];
        let target = str_at(service, "build.target");
        assert!(
            dockerfile.contains(&format!(" AS {target}\n")),
            "{name}: no Dockerfile stage {target}"
        );
        assert_eq!(str_at(service, "build.dockerfile"), "deploy/Dockerfile");
        let env = service["environment"].as_hash().unwrap();
        for var in env.keys() {
            let var = var.as_str().unwrap();
            assert!(
                env_vars.contains(var),
                "{name}: {var} is not read by the binary"
            );
        }
    }
    for gw in ["gateway-1", "gateway-2"] {
        let env = &services[gw]["environment"];
        assert_eq!(env["SWITCHYARD_NODE_ID"].as_str(), Some(gw));
        assert_eq!(
            env["SWITCHYARD_CONTROL_PLANE"].as_str(),
            Some("http://control-plane:50051")
        );
        let volumes = services[gw]["volumes"].as_vec().unwrap();
        let spool = str_at(env, "SWITCHYARD_SPOOL_DIR");
        assert!(
            volumes
                .iter()
                .any(|v| v.as_str().unwrap().ends_with(&format!(":{spool}"))),
            "{gw}: the spool is not on a volume"
        );
        for v in volumes {
            let volume = v.as_str().unwrap().split(':').next().unwrap();
            assert!(!compose["volumes"][volume].is_badvalue(), "volume {volume}");
        }
    }
    assert!(
        str_at(
            &services["control-plane"]["environment"],
            "SWITCHYARD_DATABASE_URL"
        )
        .starts_with("postgres://")
    );
    // Every ${VAR} the file interpolates is documented in .env.example or has a default.
    for piece in text.split("${").skip(1) {
        let expr = piece.split('}').next().unwrap();
        let var = expr.split([':', '-', '?']).next().unwrap();
        let has_default = expr.contains(":-");
        assert!(
            has_default || example.contains(&format!("{var}=")),
            "${{{var}}} is neither defaulted nor in .env.example"
        );
    }
}

#[test]
fn dockerfile_builds_both_binaries_into_non_root_images() {
    let dockerfile = read("deploy/Dockerfile");
    let env_vars = known_env_vars();
    assert!(dockerfile.contains("cargo build --release --locked"));
    let stages: Vec<&str> = dockerfile.split("\nFROM ").skip(1).collect();
    assert!(stages.len() >= 3, "a builder and two runtime stages");
    for (target, binary) in [
        ("control-plane", "switchyard"),
        ("gateway", "switchyard-gateway"),
    ] {
        let stage = stages
            .iter()
            .find(|s| {
                s.lines()
                    .next()
                    .unwrap()
                    .ends_with(&format!(" AS {target}"))
            })
            .unwrap_or_else(|| panic!("no stage {target}"));
        assert!(
            !stage.starts_with("rust:"),
            "{target}: runtime image is the toolchain"
        );
        let user = stage
            .lines()
            .find_map(|l| l.strip_prefix("USER "))
            .unwrap_or_else(|| panic!("{target}: no USER"));
        assert!(
            !user.starts_with('0') && !user.starts_with("root"),
            "{target}: runs as root"
        );
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{binary}\"]")),
            "{target}: entrypoint"
        );
        for var in env_names_in(stage) {
            assert!(
                env_vars.contains(&var),
                "{target}: {var} is not read by the binary"
            );
        }
    }
    // The binaries the images copy are the workspace's [[bin]] targets.
    assert!(read("control-plane/Cargo.toml").contains("name = \"switchyard\""));
    assert!(read("data-plane/Cargo.toml").contains("name = \"switchyard-gateway\""));
    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

/// When the binaries are built next to this test (`cargo test --workspace`) and newer than
/// their CLI sources, their `--help` lists every variable the manifests pass as a flag.
#[test]
fn manifests_match_the_binaries_help() {
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
    else {
        return;
    };
    let not_flags = ["SWITCHYARD_LOG", "SWITCHYARD_LOG_FORMAT"];
    let manifests = format!(
        "{}{}{}",
        read("deploy/compose.yaml"),
        read("deploy/helm/switchyard/templates/control-plane.yaml"),
        read("deploy/helm/switchyard/templates/gateway.yaml")
    );
    for (binary, args, source, marker) in [
        (
            "switchyard",
            &["control-plane", "--help"][..],
            "control-plane/src/cli.rs",
            "SWITCHYARD_DATABASE_URL",
        ),
        (
            "switchyard-gateway",
            &["--help"][..],
            "data-plane/src/main.rs",
            "SWITCHYARD_SPOOL_DIR",
        ),
    ] {
        let path = dir.join(binary);
        let (Ok(bin), Ok(src)) = (
            std::fs::metadata(&path).and_then(|m| m.modified()),
            std::fs::metadata(repo().join(source)).and_then(|m| m.modified()),
        ) else {
            continue;
        };
        if bin < src {
            continue;
        }
        let output = std::process::Command::new(&path)
            .args(args)
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        let flags: BTreeSet<String> = env_names_in(&help);
        assert!(flags.contains(marker), "{binary} --help: {help}");
        // Variables the source declares as clap flags (`env = "…"`).
        let owned: BTreeSet<String> = read(source)
            .split("env = \"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(str::to_owned)
            .collect();
        for var in env_names_in(&manifests) {
            if owned.contains(&var) && !not_flags.contains(&var.as_str()) {
                assert!(flags.contains(&var), "{binary} --help lacks {var}");
            }
        }
    }
}

#[test]
fn production_guide_covers_operations() {
    let guide = read("deploy/PRODUCTION.md");
    for topic in [
        "Postgres",
        "high availability",
        "Sizing",
        "Upgrades",
        "migrations",
        "Backups",
        "/metrics",
        "SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS",
        "SWITCHYARD_LOG_FORMAT",
    ] {
        assert!(
            guide.contains(topic),
            "PRODUCTION.md does not cover {topic}"
        );
    }
}
