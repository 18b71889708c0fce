//! The lab's plan, `kmdr.yaml`, as a typed value: the parts of the plan
//! format (docs/plan.md) the lab uses, written by the YAML crate so that
//! every path and shell line is quoted as YAML quotes it. Only the comment
//! header is text: it names the lab directory, with control characters
//! replaced so that a comment stays one line.

use crate::kube::{RELEASE, RELEASE_NAMESPACE, TENANT_NAMESPACE, ready_status};
use crate::servers::Kine;
use crate::under_cluster::UnderCluster;
use crate::under_cluster::sh_quote;
use crate::{LabError, LabState, PLAN_HEADER};
use chrono::NaiveDate;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// A plan file (the top level).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanFile {
    pub version: u32,
    pub name: String,
    pub repository: Repository,
    pub layers: Layers,
    pub run: Vec<RunStep>,
    pub contacts: Vec<Contact>,
    pub credentials: Vec<Credential>,
}

/// `repository:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub url: PathBuf,
    pub key_file: PathBuf,
}

/// `layers:`, in recovery order.
#[derive(Debug, Clone, Serialize)]
pub struct Layers {
    #[serde(rename = "under-cluster")]
    pub under_cluster: EtcdLayer,
    pub platform: PlatformLayer,
    #[serde(rename = "tenant-control-planes")]
    pub tenant_control_planes: TenantsLayer,
    #[serde(rename = "persistent-data")]
    pub persistent_data: Targets,
}

/// A layer's recovery time and point objectives (`5m`, `2h`).
#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    pub rto: String,
    pub rpo: String,
}

impl Targets {
    fn new(rto: &str, rpo: &str) -> Targets {
        Targets { rto: rto.into(), rpo: rpo.into() }
    }
}

/// `under-cluster:` with `etcd:` and, when the lab runs Kubernetes, the
/// `nodeFiles:` of its API server (its CA and service-account key).
#[derive(Debug, Clone, Serialize)]
pub struct EtcdLayer {
    #[serde(flatten)]
    pub targets: Targets,
    pub etcd: Etcd,
    #[serde(rename = "nodeFiles", skip_serializing_if = "Option::is_none")]
    pub node_files: Option<NodeFiles>,
}

/// `nodeFiles:`: files as on the node, read under `root`, restored there.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeFiles {
    pub paths: Vec<String>,
    pub root: PathBuf,
    pub restore_to: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Etcd {
    pub endpoints: Vec<String>,
    pub restore: EtcdRestore,
}

/// `etcd: restore:`: how a drill rebuilds the member.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EtcdRestore {
    pub data_dir: PathBuf,
    pub name: String,
    pub initial_cluster: String,
    pub initial_advertise_peer_urls: String,
}

/// `platform:`, with `helm:` when the lab runs Kubernetes.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformLayer {
    #[serde(flatten)]
    pub targets: Targets,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub helm: Option<Helm>,
}

/// `helm:`: the platform's release.
#[derive(Debug, Clone, Serialize)]
pub struct Helm {
    pub release: String,
    pub namespace: String,
    pub kubeconfig: PathBuf,
}

/// `tenant-control-planes:` with `datastores:`.
#[derive(Debug, Clone, Serialize)]
pub struct TenantsLayer {
    #[serde(flatten)]
    pub targets: Targets,
    pub datastores: Vec<Datastore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kamaji: Option<Kamaji>,
}

/// `kamaji:`: the tenants' Kamaji objects on the lab's API server.
#[derive(Debug, Clone, Serialize)]
pub struct Kamaji {
    pub kubeconfig: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    pub name: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// `all`.
    pub tenants: String,
}

/// `run:`: a step of the drill.
#[derive(Debug, Clone, Serialize)]
pub struct RunStep {
    pub name: String,
    pub layer: String,
    pub phase: String,
    pub command: Command,
    pub timeout: String,
}

/// `command:`: a shell line (`sh -c`) or an argv list.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Command {
    Shell(String),
    Argv(Vec<String>),
}

/// `contacts:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub name: String,
    pub role: String,
    pub reviewed: NaiveDate,
    pub review_every: String,
}

/// `credentials:`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Credential {
    pub name: String,
    pub location: PathBuf,
    pub reviewed: NaiveDate,
    pub review_every: String,
}

impl PlanFile {
    /// The lab's plan: every layer, the under cluster drillable through the
    /// same lines that started it, the datastores that run, a contact and a
    /// credential reviewed `today`.
    pub fn for_lab(state: &LabState, uc: &UnderCluster, today: NaiveDate) -> PlanFile {
        let datastores = state
            .processes
            .iter()
            .filter(|p| p.name == "tenant-etcd" || p.name.starts_with("kine-"))
            .map(|p| Datastore {
                name: p.name.trim_start_matches("kine-").into(),
                url: p.url.clone(),
                password_file: Kine::password_file(&state.dir, &p.name),
                tenants: "all".into(),
            })
            .collect();
        let step = |layer: &str, name: &str, phase: &str, command: Command, timeout: &str| RunStep {
            name: name.into(),
            layer: layer.into(),
            phase: phase.into(),
            command,
            timeout: timeout.into(),
        };
        let health = ["etcdctl", "--endpoints", &uc.client_url, "endpoint", "health"].map(String::from);
        let helm = state.kube.as_ref().map(|k| Helm {
            release: RELEASE.into(),
            namespace: RELEASE_NAMESPACE.into(),
            kubeconfig: k.kubeconfig.clone(),
        });
        let mut run = vec![
            step("under-cluster", "stop etcd and lose its data dir", "failure", Command::Shell(uc.stop_line()), "30s"),
            step(
                "under-cluster",
                "start etcd on the restored data dir",
                "after-restore",
                Command::Shell(uc.start_line()),
                "60s",
            ),
            step("under-cluster", "etcd endpoint health", "health-check", Command::Argv(health.into()), "30s"),
        ];
        if let Some(h) = &helm {
            let helm_argv = |verb: &[&str]| {
                let mut argv: Vec<String> = ["helm"].iter().chain(verb).map(|s| s.to_string()).collect();
                argv.extend([h.release.clone(), "--namespace".into(), h.namespace.clone(), "--kubeconfig".into()]);
                argv.push(h.kubeconfig.display().to_string());
                argv
            };
            run.push(step(
                "platform",
                "uninstall the platform release",
                "failure",
                Command::Argv(helm_argv(&["uninstall", "--wait"])),
                "2m",
            ));
            run.push(step(
                "platform",
                "the platform release is deployed",
                "health-check",
                Command::Argv(helm_argv(&["status"])),
                "2m",
            ));
        }
        let kamaji = state.kube.as_ref().filter(|k| k.kamaji).map(|k| Kamaji { kubeconfig: k.kubeconfig.clone() });
        if let Some(k) = state.kube.as_ref().filter(|k| k.kamaji) {
            // Kamaji's controller would set each re-created TenantControlPlane up
            // and report it Ready; the lab runs no Kamaji, so this step does.
            let lines: Vec<String> = k
                .tenants
                .iter()
                .map(|t| {
                    format!(
                        "kubectl --kubeconfig {} -n {TENANT_NAMESPACE} patch tenantcontrolplane {t} --subresource=status --type=merge -p '{}'",
                        sh_quote(&k.kubeconfig),
                        ready_status(t)
                    )
                })
                .collect();
            run.push(step(
                "tenant-control-planes",
                "play Kamaji's controller: the restored TenantControlPlanes report Ready (the lab runs no Kamaji)",
                "after-restore",
                Command::Shell(lines.join(" && ")),
                "60s",
            ));
        }
        PlanFile {
            version: 1,
            name: "kmdr-lab".into(),
            repository: Repository { url: state.repository.clone(), key_file: state.key_file.clone() },
            layers: Layers {
                under_cluster: EtcdLayer {
                    targets: Targets::new("5m", "1h"),
                    etcd: Etcd {
                        endpoints: vec![uc.client_url.clone()],
                        restore: EtcdRestore {
                            data_dir: uc.data_dir(),
                            name: "uc".into(),
                            initial_cluster: format!("uc={}", uc.peer_url),
                            initial_advertise_peer_urls: uc.peer_url.clone(),
                        },
                    },
                    // The lab API server's identity: its pki/ as kubeadm's would be.
                    node_files: state.kube.as_ref().map(|_| NodeFiles {
                        paths: ["ca.crt", "ca.key", "sa.key", "sa.pub"].map(|f| format!("/pki/{f}")).into(),
                        root: state.dir.join("kube"),
                        restore_to: state.dir.join("kube"),
                    }),
                },
                platform: PlatformLayer { targets: Targets::new("2h", "15m"), helm },
                tenant_control_planes: TenantsLayer { targets: Targets::new("15m", "5m"), datastores, kamaji },
                persistent_data: Targets::new("2h", "1h"),
            },
            run,
            contacts: vec![Contact {
                name: "Lab owner".into(),
                role: "runs the drills".into(),
                reviewed: today,
                review_every: "90d".into(),
            }],
            credentials: vec![Credential {
                name: "repository key".into(),
                location: state.key_file.clone(),
                reviewed: today,
                review_every: "180d".into(),
            }],
        }
    }

    /// The plan as `kmdr.yaml` holds it: the comment header, then the YAML.
    pub fn to_yaml(&self, dir: &Path) -> Result<String, LabError> {
        let dir: String = dir.display().to_string().chars().map(|c| if c.is_control() { '?' } else { c }).collect();
        let platform = match self.layers.platform.helm {
            Some(_) => {
                "# platform: the Helm release on the lab's API server; the run steps uninstall\n#   it, kmdr reinstalls it with helm."
            }
            None => "# platform: targets only (no kube-apiserver and helm: scripts/build-go-tools.sh).",
        };
        let header = format!(
            "{PLAN_HEADER} (see docs/plan.md).
# Everything runs on 127.0.0.1 from {dir}; `kmdr drill --lab` drills it,
# `kmdr lab down` stops it. Edit a copy to try other targets or steps.
#
# under-cluster: the management cluster's etcd; the run steps stop, wipe and
#   restart it.
# tenant-control-planes: the Kamaji datastores (and, with the API server, the
#   tenants' Kamaji objects); a drill wipes every tenant (and deletes its
#   TenantControlPlane) and restores it.
{platform}
# persistent-data: targets only (the lab has no volumes).
"
        );
        let yaml = serde_norway::to_string(self).map_err(LabError::PlanYaml)?;
        Ok(header + &yaml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LabProcess;
    use kmdr_plan::{LayerSource, TenantSelector};

    fn state(dir: &Path) -> LabState {
        let process = |name: &str, url: &str| LabProcess {
            name: name.into(),
            program: "etcd".into(),
            pid_file: dir.join(format!("{name}.pid")),
            ports: vec![2379],
            url: url.into(),
            log: dir.join(format!("{name}.log")),
            tenants: vec!["acme".into()],
            keys: 10,
        };
        LabState {
            dir: dir.into(),
            plan: dir.join("kmdr.yaml"),
            repository: dir.join("repo"),
            key_file: dir.join("kmdr.key"),
            started_at: chrono::Utc::now(),
            processes: vec![
                process("under-cluster-etcd", "http://127.0.0.1:2379"),
                process("tenant-etcd", "etcd://127.0.0.1:2479"),
                process("kine-postgres", "postgres://kmdr@127.0.0.1:5432"),
                process("kine-mariadb", "mysql://root@127.0.0.1:3306"),
            ],
            notes: Vec::new(),
            kube: None,
        }
    }

    #[test]
    fn the_plan_parses_back_with_every_path_as_it_was() {
        let today = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        for dir in
            ["/tmp/kmdr-lab", "/tmp/a lab: it's \"quoted\" #1", "/tmp/- [x]: {y}, &z *w !v |u >t %s @r `q`\nnext"]
        {
            let dir = Path::new(dir);
            let st = state(dir);
            let uc = UnderCluster::new(dir);
            let yaml = PlanFile::for_lab(&st, &uc, today).to_yaml(dir).unwrap();
            assert!(yaml.starts_with(PLAN_HEADER), "{yaml}");
            let plan = kmdr_plan::parse_plan(&st.plan, &yaml).unwrap_or_else(|p| {
                panic!("{}\n{yaml}", kmdr_plan::parse::render(&st.plan, &p));
            });
            assert_eq!(plan.repository.url, st.repository.to_str().unwrap());
            assert_eq!(plan.repository.key_file.as_deref(), Some(st.key_file.as_path()));
            assert_eq!(plan.credentials[0].detail, st.key_file.to_str().unwrap());
            assert_eq!(plan.contacts[0].reviewed, today);
            let mut layers = plan.layers.iter().map(|l| &l.source);
            let Some(LayerSource::UnderCluster { etcd, .. }) = layers.next() else {
                panic!("under-cluster first: {yaml}")
            };
            assert_eq!(etcd.endpoints, std::slice::from_ref(&uc.client_url));
            let member = etcd.restore.as_ref().unwrap();
            assert_eq!(member.data_dir, uc.data_dir());
            assert_eq!(member.initial_cluster, format!("uc={}", uc.peer_url));
            let tenants = plan.layers.iter().find_map(|l| match &l.source {
                LayerSource::Tenants { datastores: d, .. } => Some(d),
                _ => None,
            });
            let ds = tenants.expect("a tenant layer");
            let names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
            assert_eq!(names, ["tenant-etcd", "postgres", "mariadb"]);
            assert_eq!(ds[1].password_file.as_deref(), Some(dir.join("pg.pw").as_path()));
            assert_eq!(ds[2].password_file.as_deref(), Some(dir.join("mariadb.pw").as_path()));
            assert!(ds[0].password_file.is_none() && matches!(ds[0].tenants, TenantSelector::All));
            let commands: Vec<&[String]> = plan.run.iter().map(|s| s.command.as_slice()).collect();
            assert_eq!(commands[0], ["sh", "-c", &uc.stop_line()]);
            assert_eq!(commands[1], ["sh", "-c", &uc.start_line()]);
            assert_eq!(commands[2], ["etcdctl", "--endpoints", &uc.client_url, "endpoint", "health"]);
        }
    }
}
