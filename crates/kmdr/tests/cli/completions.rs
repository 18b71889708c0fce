//! `kmdr completions` and `kmdr man`: generated from the clap definitions,
//! so they must name the commands that exist; bash must accept the script
//! and groff (or man) must read every page.

use crate::common::Kmdr;
use std::process::Command;

/// The top-level subcommands, from `kmdr --help` (what the user sees).
fn subcommands(k: &Kmdr) -> Vec<String> {
    let help = k.ok(&["--help"]);
    let list = help.split("Commands:").nth(1).expect("kmdr --help lists its commands");
    list.lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn bash_zsh_and_fish_completions_name_the_real_commands() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    let subs = subcommands(&k);
    for must in ["backup", "restore", "backups", "serve", "drill", "completions", "man"] {
        assert!(subs.iter().any(|s| s == must), "{must} missing from {subs:?}");
    }
    let bash = k.ok(&["completions", "bash"]);
    let script = dir.path().join("kmdr.bash");
    std::fs::write(&script, &bash).unwrap();
    let o = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(o.status.success(), "bash -n refuses the script: {}", String::from_utf8_lossy(&o.stderr));
    for s in &subs {
        assert!(bash.contains(&format!("kmdr,{s})")), "bash completion lacks {s}");
    }
    // Sourced, it completes `kmdr back` to the two commands that start so, and `backups list --` to its flags.
    let complete = |words: &str| {
        let line = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); COMP_LINE=\"{words}\"; COMP_POINT=${{#COMP_LINE}}; _kmdr kmdr \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let o = Command::new("bash").arg("-c").arg(line).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let back: Vec<String> = complete("kmdr back").lines().map(String::from).collect();
    assert_eq!(back, ["backup", "backups"]);
    let flags = complete("kmdr backups list --");
    assert!(flags.lines().any(|l| l == "--unit") && flags.lines().any(|l| l == "--kind"), "{flags}");

    let zsh = k.ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef kmdr"), "{}", &zsh[..zsh.len().min(200)]);
    let fish = k.ok(&["completions", "fish"]);
    for s in &subs {
        assert!(zsh.contains(&format!("'{s}:")), "zsh completion lacks {s}");
        assert!(fish.contains(&format!("-a \"{s}\"")), "fish completion lacks {s}");
    }
    // A shell clap does not know is a usage error naming the ones it does.
    let o = k.run(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bash") && err.contains("zsh") && err.contains("fish"), "{err}");
}

#[test]
fn man_writes_a_page_per_command_that_groff_reads() {
    let dir = tempfile::tempdir().unwrap();
    let k = Kmdr::local(dir.path());
    let out = dir.path().join("man/man1");
    let v = k.json(&["man", "--out", out.to_str().unwrap()]);
    let pages: Vec<String> = v["pages"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let mut expected = vec!["kmdr".to_string()];
    expected.extend(subcommands(&k).iter().map(|s| format!("kmdr-{s}")));
    expected.extend(["kmdr-backup-etcd", "kmdr-backups-list", "kmdr-restore-tenant", "kmdr-lab-up"].map(String::from));
    for name in &expected {
        let page = out.join(format!("{name}.1"));
        assert!(pages.iter().any(|p| p == &page.display().to_string()), "{name}.1 not reported in {pages:?}");
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let th = text.lines().find(|l| l.starts_with(".TH ")).map(|l| l.replace("\\-", "-"));
        assert!(th.as_ref().is_some_and(|l| l.starts_with(&format!(".TH {name} 1 "))), "{name}: .TH is {th:?}");
    }
    assert_eq!(pages.len(), std::fs::read_dir(&out).unwrap().count(), "every page written is reported, no more");

    // groff renders them: the serve page as plain text, with its description and a flag.
    if kmdr_testkit::need("groff") {
        for name in &expected {
            let o = Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(out.join(format!("{name}.1")))
                .output()
                .unwrap();
            assert!(o.status.success(), "groff fails on {name}.1");
            assert!(o.stderr.is_empty(), "groff warns on {name}.1: {}", String::from_utf8_lossy(&o.stderr));
        }
        let o = Command::new("groff")
            .args(["-man", "-Tascii", "-P", "-cbou"])
            .arg(out.join("kmdr-serve.1"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("kmdr-serve") && text.contains("--metrics-addr") && text.contains("Lease"), "{text}");
    }

    // Where it cannot write, it says so and what to do.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let err = k.fails(&["man", "--out", blocker.join("sub").to_str().unwrap()], 10);
    assert!(err.contains("cannot create --out") && err.contains("pick a directory"), "{err}");
}
