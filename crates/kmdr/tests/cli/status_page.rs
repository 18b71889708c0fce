//! `kmdr serve`'s status page at `/`, rendered by a real browser (Debian's
//! headless Chromium): a real serve over two real etcds, one unit (the
//! under-cluster's etcd, RPO target 3 s) on time and then late after its etcd
//! is killed, the other a tenant of a datastore whose name in the plan is
//! HTML. The DOM Chromium builds is checked (the late unit marked late, the
//! hostile name text and not markup, no script anywhere) and a screenshot
//! is kept in target/test-artifacts/ (or $KMDR_TEST_ARTIFACTS).

use crate::common;
use crate::serve::{Serve, http_get, runtime};
use common::{Etcd, Kmdr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The datastore's name in the plan: markup and a script, as a careless or hostile plan could hold.
const HOSTILE: &str = r#"<script>document.title="pwned"</script><b>bold</b> & co"#;

fn artifacts_dir() -> PathBuf {
    let dir = std::env::var_os("KMDR_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url` with `args`; its stdout.
fn chromium(profile: &Path, url: &str, args: &[&str]) -> String {
    let o = std::process::Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(o.status.success(), "chromium {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The `<tr>` of `unit` in a page or DOM (up to its `</tr>`).
fn row<'a>(page: &'a str, unit_attr: &str) -> Option<&'a str> {
    let start = page.find(&format!("data-unit=\"{unit_attr}\""))?;
    let start = page[..start].rfind("<tr")?;
    let end = page[start..].find("</tr>")? + start;
    Some(&page[start..end])
}

/// Poll `/` (60 s) until `ok` holds for the page; the page then.
fn wait_page(s: &Serve, log: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((status, page)) = http_get(&s.addr, "/") {
            assert!(status.contains("200"), "GET / answered {status}");
            if ok(&page) {
                return page;
            }
            assert!(Instant::now() < deadline, "the status page never showed {what}; see {}:\n{page}", log.display());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn the_status_page_in_chromium_marks_a_late_unit_and_escapes_a_hostile_name() {
    need_etcd!();
    if !kmdr_testkit::need("chromium") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    k.init();
    let mut uc = Etcd::start(dir.path(), "uc");
    let shared = Etcd::start(dir.path(), "shared");
    let rt = runtime();
    rt.block_on(async {
        uc.load("/registry/namespaces/", 20, 32, 1).await;
        shared.load("/t1/pods/", 30, 64, 2).await;
    });
    let plan = dir.path().join("kmdr.yaml");
    std::fs::write(
        &plan,
        format!(
            "version: 1\nname: status-page-test\nrepository:\n  url: {}\n  keyFile: {}\nlayers:\n  under-cluster:\n    rto: 1h\n    rpo: 3s\n    etcd:\n      endpoints: [{}]\n  tenant-control-planes:\n    rto: 1h\n    rpo: 1h\n    datastores:\n      - name: '{HOSTILE}'\n        url: {}\n        tenants: [t1]\n",
            k.repo,
            k.key_file.display(),
            uc.client_url,
            shared.client_url.replace("http://", "etcd://")
        ),
    )
    .unwrap();
    let plan = plan.display().to_string();
    let log = dir.path().join("serve.log");
    let serve = Serve::start(&k, &plan, &log);

    // Both units protected: the page says so before anything goes wrong.
    let tenant = format!("{}/t1", kmdr_plan::html::E(HOSTILE));
    let page = wait_page(&serve, &log, "both units on time", |p| {
        [row(p, "etcd"), row(p, &tenant)]
            .iter()
            .all(|r| r.is_some_and(|r| r.contains("<td class=\"state\">on time</td>")))
    });
    assert!(page.contains("<meta http-equiv=\"refresh\""), "{page}");

    // The under-cluster's etcd dies: its RPO (3 s) runs out and the page marks it late.
    uc.kill();
    wait_page(&serve, &log, "etcd late", |p| {
        row(p, "etcd").is_some_and(|r| r.contains("class=\"unit late\"") && r.contains("<td class=\"state\">late</td>"))
    });

    let url = format!("http://{}/", serve.addr);
    let profile = dir.path().join("chromium");
    let dom = chromium(&profile, &url, &["--dump-dom"]);
    let shot = artifacts_dir().join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&profile, &url, &["--window-size=1400,900", &format!("--screenshot={}", shot.display())]);
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "no screenshot at {}", shot.display());
    std::fs::write(artifacts_dir().join("status-page.dom.html"), &dom).unwrap();

    // What the browser built: the late unit late, the other on time, counted in the summary.
    let late = row(&dom, "etcd").unwrap_or_else(|| panic!("no row for etcd in the DOM:\n{dom}"));
    assert!(late.contains("class=\"unit late\"") && late.contains("<td class=\"state\">late</td>"), "{late}");
    assert!(dom.contains("1 on time, 1 late"), "{dom}");
    // The hostile name is text: escaped in the DOM's serialization, never an element; no script ran or exists.
    assert!(
        dom.contains("&lt;script&gt;document.title=\"pwned\"&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt; &amp; co/t1"),
        "{dom}"
    );
    assert!(!dom.contains("<b>bold</b>") && !dom.to_lowercase().contains("<script"), "{dom}");
    assert!(dom.contains("<title>kmdr serve: status-page-test"), "{dom}");
    let tenant_row = dom
        .find("co/t1</td>")
        .and_then(|i| Some(&dom[dom[..i].rfind("<tr")?..i + dom[i..].find("</tr>")?]))
        .unwrap_or_else(|| panic!("no row for the tenant in the DOM:\n{dom}"));
    assert!(tenant_row.contains("<td class=\"state\">on time</td>"), "{tenant_row}");
    serve.terminate();
}
