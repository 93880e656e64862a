//! Pure building blocks of the code changes the orchestrator proposes as pull requests (see
//! [`super::fixes`]): the fix branch's name and its guard, the edit of a pip
//! `requirements.txt`, the import-name → distribution table, runner-absolute log paths made
//! repository-relative, and the formatter command lines. No I/O: the executor fetches the
//! file, calls these, runs the formatter ([`super::formatter`]) and writes the result.

use std::collections::BTreeMap;

use serde::Serialize;

use super::patterns::IssueType;

/// Every branch the orchestrator creates starts with this.
pub const BRANCH_PREFIX: &str = "flotilla/";

/// The file a pip dependency is added to, at the repository root.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";

/// `flotilla/fix-{issue_type}-{run_id}`: one branch per class and failed run, so a second
/// attempt finds the first one's branch.
pub fn fix_branch(issue_type: IssueType, run_id: u64) -> String {
    format!("{BRANCH_PREFIX}fix-{issue_type}-{run_id}")
}

/// The guard every write of a patch passes first: `branch` must start with
/// [`BRANCH_PREFIX`], be a well-formed branch name (`git check-ref-format` rules: no `..`,
/// no space, `~ ^ : ? * [ \`, control character, `@{`, no `.lock` or `/` at the end, no empty
/// or dot-led component), and be neither the repository's default branch nor the failed run's
/// head branch (compared case-insensitively).
///
/// # Errors
/// Why the branch is refused, naming it.
pub fn check_fix_branch(
    branch: &str,
    default_branch: &str,
    head_branch: Option<&str>,
) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("refusing to write to branch `{branch}`: {why}"));
    let Some(rest) = branch.strip_prefix(BRANCH_PREFIX) else {
        return refuse(&format!("it does not start with `{BRANCH_PREFIX}`"));
    };
    if rest.is_empty()
        || branch.contains("..")
        || branch.contains("@{")
        || branch.ends_with(".lock")
        || branch.ends_with('/')
        || branch
            .chars()
            .any(|c| c.is_ascii_control() || " ~^:?*[\\".contains(c))
        || branch
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return refuse("it is not a valid branch name");
    }
    if branch.eq_ignore_ascii_case(default_branch) {
        return refuse("it is the repository's default branch");
    }
    if head_branch.is_some_and(|h| branch.eq_ignore_ascii_case(h)) {
        return refuse("it is the failed run's own branch");
    }
    Ok(())
}

/// Import names whose distribution (what `pip install` takes) has another name: `(import
/// name, distribution, other distributions that provide the same module)`.
const PIP_DISTRIBUTIONS: &[(&str, &str, &[&str])] = &[
    ("yaml", "PyYAML", &[]),
    (
        "cv2",
        "opencv-python",
        &[
            "opencv-python-headless",
            "opencv-contrib-python",
            "opencv-contrib-python-headless",
        ],
    ),
    ("PIL", "Pillow", &["pillow-simd"]),
    ("sklearn", "scikit-learn", &[]),
    ("skimage", "scikit-image", &[]),
    ("bs4", "beautifulsoup4", &[]),
    ("dateutil", "python-dateutil", &[]),
    ("dotenv", "python-dotenv", &[]),
    ("jwt", "PyJWT", &[]),
    ("Crypto", "pycryptodome", &["pycrypto"]),
    ("serial", "pyserial", &[]),
    ("usb", "pyusb", &[]),
    ("magic", "python-magic", &[]),
    ("docx", "python-docx", &[]),
    ("pptx", "python-pptx", &[]),
    ("OpenSSL", "pyOpenSSL", &[]),
    ("git", "GitPython", &[]),
    ("attr", "attrs", &[]),
    ("MySQLdb", "mysqlclient", &[]),
    ("psycopg2", "psycopg2", &["psycopg2-binary"]),
    ("fitz", "PyMuPDF", &[]),
    ("zmq", "pyzmq", &[]),
    ("win32api", "pywin32", &[]),
    ("telegram", "python-telegram-bot", &[]),
    ("distutils", "setuptools", &[]),
    ("pkg_resources", "setuptools", &[]),
];

/// The distribution that provides the top-level module `module` (`yaml` → `PyYAML`, `cv2` →
/// `opencv-python`, ...; the module's own name when the table does not know it), and the other
/// distributions that provide it too (any of them already listed counts as listed).
pub fn pip_distribution(module: &str) -> (&str, &'static [&'static str]) {
    PIP_DISTRIBUTIONS
        .iter()
        .find(|(m, _, _)| *m == module)
        .map_or((module, &[][..]), |(_, d, also)| (*d, *also))
}

/// A distribution name normalized as PEP 503 does: lower case, each run of `-`, `_`, `.` one
/// `-` (so `PyYAML`, `pyyaml` and `Py_YAML` compare equal).
pub fn normalize_distribution(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// The distribution named by one `requirements.txt` line (`PyYAML>=6 ; python_version>"3"`
/// → `PyYAML`), or `None` for blank lines, comments, options (`-r`, `-e`, `--index-url`) and
/// URLs.
pub fn requirement_name(line: &str) -> Option<&str> {
    let l = line.trim();
    let end = l
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(l.len());
    let (name, rest) = l.split_at(end);
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_next = rest
        .chars()
        .next()
        .is_none_or(|c| c.is_whitespace() || "[=<>!~;@,(#".contains(c));
    (ok_start && ok_next).then_some(name)
}

/// The result of [`add_requirement`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequirementsEdit {
    /// The new file content: the old one, a line break if it lacked a final one, and the
    /// distribution on its own line (the file's own line ending, `\n` or `\r\n`).
    Added(String),
    /// Nothing to add: this line already names the distribution (or one of the alternatives).
    AlreadyListed(String),
}

/// Add `distribution` to a `requirements.txt` whose content is `existing`, unless it or one
/// of `alternatives` is already listed (names compared as [`normalize_distribution`] does).
/// Existing content is kept byte for byte.
pub fn add_requirement(
    existing: &str,
    distribution: &str,
    alternatives: &[&str],
) -> RequirementsEdit {
    let wanted: Vec<String> = std::iter::once(distribution)
        .chain(alternatives.iter().copied())
        .map(normalize_distribution)
        .collect();
    if let Some(line) = existing
        .lines()
        .find(|l| requirement_name(l).is_some_and(|n| wanted.contains(&normalize_distribution(n))))
    {
        return RequirementsEdit::AlreadyListed(line.trim().to_string());
    }
    let eol = if existing.contains("\r\n") {
        "\r\n"
    } else {
        "\n"
    };
    let mut out = existing.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push_str(eol);
    }
    out.push_str(distribution);
    out.push_str(eol);
    RequirementsEdit::Added(out)
}

/// Workspace roots of GitHub runners: `/home/runner/work`, `/Users/runner/work`,
/// `…/actions-runner/_work`, `/__w` (job containers), `D:\a` (hosted Windows).
fn is_workspace_root(segs: &[&str], i: usize) -> bool {
    let s = segs[i];
    matches!(s, "work" | "_work" | "__w")
        || (i == 1 && s.eq_ignore_ascii_case("a") && is_drive(segs[0]))
}

fn is_drive(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// A path from a log made relative to the repository root, `/`-separated: runner-absolute
/// paths lose the checkout prefix (`/home/runner/work/repo/repo/src/lib.rs`,
/// `D:\a\repo\repo\src\x.rs`, `\\?\D:\a\…`, `/__w/repo/repo/…`,
/// `/opt/actions-runner/_work/repo/repo/…` → `src/…`), found as the first `<repo>/<repo>/`
/// pair (case-insensitive), else a runner workspace root followed by two equal components;
/// relative paths lose a leading `./`. `None` if an absolute path has neither, or the result is
/// empty or climbs out (`..`).
pub fn repo_relative_path(log_path: &str, repo_name: &str) -> Option<String> {
    let p = log_path
        .trim()
        .trim_matches(|c| matches!(c, '\'' | '"' | '`'));
    let p = p.strip_prefix(r"\\?\").unwrap_or(p);
    let norm = p.replace('\\', "/");
    let absolute = norm.starts_with('/') || norm.split('/').next().is_some_and(is_drive);
    let segs: Vec<&str> = norm
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    let start = if absolute {
        let pair = |i: usize| segs[i + 1] == segs[i + 2];
        let by_name = (0..segs.len().saturating_sub(1)).find(|&i| {
            segs[i].eq_ignore_ascii_case(repo_name) && segs[i + 1].eq_ignore_ascii_case(repo_name)
        });
        let by_root = || {
            (0..segs.len().saturating_sub(2))
                .find(|&i| is_workspace_root(&segs, i) && pair(i))
                .map(|i| i + 1)
        };
        by_name.or_else(by_root)? + 2
    } else {
        0
    };
    let rel = segs.get(start..)?;
    if rel.is_empty() || rel.iter().any(|s| *s == ".." || s.contains(':')) {
        return None;
    }
    Some(rel.join("/"))
}

/// The built-in formatter commands (`orchestrator.formatters` adds to or replaces them per
/// tool): each reads the file on stdin and writes the formatted file to stdout; `{path}` in an
/// argument is replaced by the repository-relative path.
pub fn default_formatters() -> BTreeMap<String, Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    BTreeMap::from([
        ("black".to_string(), v(&["black", "-q", "-"])),
        (
            "cargo fmt".to_string(),
            v(&["rustfmt", "--edition", "2021", "--emit", "stdout"]),
        ),
        (
            "prettier".to_string(),
            v(&["prettier", "--stdin-filepath", "{path}"]),
        ),
    ])
}

/// `command` with `{path}` replaced by `path` in every argument.
pub fn formatter_argv(command: &[String], path: &str) -> Vec<String> {
    command.iter().map(|a| a.replace("{path}", path)).collect()
}

/// The code change of a patch plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PatchChange {
    /// Append `distribution` to [`REQUIREMENTS_FILE`] at the repository root (pip).
    AddRequirement {
        /// The missing module, as the log named it.
        module: String,
        /// The distribution to add ([`pip_distribution`]).
        distribution: String,
        /// Other distributions that provide the module.
        alternatives: Vec<String>,
    },
    /// Run a formatter on one file and commit its output.
    Format {
        /// The pattern's tool, e.g. `cargo fmt`.
        tool: String,
        /// Repository-relative path of the file.
        path: String,
        /// The command, `{path}` already replaced ([`formatter_argv`]).
        command: Vec<String>,
    },
}

impl PatchChange {
    /// The repository-relative path of the file the change writes.
    pub fn file(&self) -> &str {
        match self {
            PatchChange::AddRequirement { .. } => REQUIREMENTS_FILE,
            PatchChange::Format { path, .. } => path,
        }
    }

    /// One line for people (and the commit message's subject): what changes.
    pub fn describe(&self) -> String {
        match self {
            PatchChange::AddRequirement {
                module,
                distribution,
                ..
            } if module == distribution => {
                format!("add `{distribution}` to {REQUIREMENTS_FILE}")
            }
            PatchChange::AddRequirement {
                module,
                distribution,
                ..
            } => format!("add `{distribution}` (for module `{module}`) to {REQUIREMENTS_FILE}"),
            PatchChange::Format { tool, path, .. } => format!("format `{path}` with {tool}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn branch_name_and_guard() {
        let b = fix_branch(IssueType::PythonImportError, 42);
        assert_eq!(b, "flotilla/fix-python_import_error-42");
        assert!(check_fix_branch(&b, "main", Some("dev")).is_ok());
        for (branch, default, head, why) in [
            ("main", "main", None, "does not start with `flotilla/`"),
            ("fix-x", "main", None, "does not start with"),
            ("flotilla/x", "flotilla/x", None, "default branch"),
            ("flotilla/X", "flotilla/x", None, "default branch"),
            ("flotilla/x", "main", Some("flotilla/x"), "run's own branch"),
            ("flotilla/", "main", None, "not a valid branch name"),
            ("flotilla/a..b", "main", None, "not a valid"),
            ("flotilla/a b", "main", None, "not a valid"),
            ("flotilla/x.lock", "main", None, "not a valid"),
            ("flotilla//x", "main", None, "not a valid"),
            ("flotilla/.x", "main", None, "not a valid"),
        ] {
            let e = check_fix_branch(branch, default, head).unwrap_err();
            assert!(e.contains(why), "{branch}: {e}");
            assert!(e.contains(&format!("`{branch}`")), "{e}");
        }
    }

    #[test]
    fn import_names_map_to_distributions() {
        assert_eq!(pip_distribution("yaml").0, "PyYAML");
        assert_eq!(pip_distribution("cv2").0, "opencv-python");
        assert!(
            pip_distribution("cv2")
                .1
                .contains(&"opencv-python-headless")
        );
        assert_eq!(pip_distribution("PIL").0, "Pillow");
        assert_eq!(pip_distribution("sklearn").0, "scikit-learn");
        assert_eq!(pip_distribution("bs4").0, "beautifulsoup4");
        assert_eq!(pip_distribution("dateutil").0, "python-dateutil");
        assert_eq!(pip_distribution("requests"), ("requests", &[][..]));
        assert_eq!(normalize_distribution("Py_YAML"), "py-yaml");
        assert_eq!(normalize_distribution("python.dateutil"), "python-dateutil");
        assert_eq!(normalize_distribution("a__-b"), "a-b");
    }

    #[test]
    fn requirement_lines() {
        assert_eq!(requirement_name("PyYAML>=6.0"), Some("PyYAML"));
        assert_eq!(
            requirement_name("  requests[socks] ; python_version>'3'"),
            Some("requests")
        );
        assert_eq!(requirement_name("numpy # pinned"), Some("numpy"));
        assert_eq!(requirement_name("pkg @ https://x/y.whl"), Some("pkg"));
        assert_eq!(requirement_name("six"), Some("six"));
        assert_eq!(requirement_name("# yaml"), None);
        assert_eq!(requirement_name("-r base.txt"), None);
        assert_eq!(requirement_name("--index-url https://x"), None);
        assert_eq!(requirement_name("https://x/pkg.whl"), None);
        assert_eq!(requirement_name("git+https://x/pkg"), None);
        assert_eq!(requirement_name(""), None);
    }

    #[test]
    fn add_requirement_appends_or_reports() {
        assert_eq!(
            add_requirement("requests==2.31\nnumpy", "PyYAML", &[]),
            RequirementsEdit::Added("requests==2.31\nnumpy\nPyYAML\n".into())
        );
        assert_eq!(
            add_requirement("requests\n", "PyYAML", &[]),
            RequirementsEdit::Added("requests\nPyYAML\n".into())
        );
        assert_eq!(
            add_requirement("", "PyYAML", &[]),
            RequirementsEdit::Added("PyYAML\n".into())
        );
        assert_eq!(
            add_requirement("a\r\nb", "c", &[]),
            RequirementsEdit::Added("a\r\nb\r\nc\r\n".into())
        );
        assert_eq!(
            add_requirement("# deps\npyyaml>=6 # yaml\n", "PyYAML", &[]),
            RequirementsEdit::AlreadyListed("pyyaml>=6 # yaml".into())
        );
        assert_eq!(
            add_requirement("Python_Dateutil\n", "python-dateutil", &[]),
            RequirementsEdit::AlreadyListed("Python_Dateutil".into())
        );
        assert_eq!(
            add_requirement(
                "opencv-python-headless==4.9\n",
                "opencv-python",
                &["opencv-python-headless"]
            ),
            RequirementsEdit::AlreadyListed("opencv-python-headless==4.9".into())
        );
        // A comment naming it does not count.
        assert!(matches!(
            add_requirement("# PyYAML later\n", "PyYAML", &[]),
            RequirementsEdit::Added(_)
        ));
    }

    #[test]
    fn runner_paths_become_repo_relative() {
        let cases = [
            (
                "/home/runner/work/flotilla/flotilla/src/lib.rs",
                "src/lib.rs",
            ),
            (r"D:\a\flotilla\flotilla\src\x.rs", "src/x.rs"),
            (r"\\?\D:\a\flotilla\flotilla\src\x.rs", "src/x.rs"),
            ("/Users/runner/work/flotilla/flotilla/a/b.py", "a/b.py"),
            ("/__w/flotilla/flotilla/src/main.rs", "src/main.rs"),
            (
                "/opt/actions-runner/_work/flotilla/flotilla/lib.rs",
                "lib.rs",
            ),
            (
                r"C:\actions-runner\_work\Flotilla\Flotilla\src\x.rs",
                "src/x.rs",
            ),
            // Checked out under another name: the workspace root decides.
            ("/home/runner/work/other/other/src/lib.rs", "src/lib.rs"),
            // The repository's name inside the repository is kept.
            (
                "/home/runner/work/flotilla/flotilla/flotilla/x.py",
                "flotilla/x.py",
            ),
            ("src/app.py", "src/app.py"),
            ("./src/app.py", "src/app.py"),
            ("'src/app.py'", "src/app.py"),
        ];
        for (p, want) in cases {
            assert_eq!(
                repo_relative_path(p, "flotilla").as_deref(),
                Some(want),
                "{p}"
            );
        }
        for p in [
            "/etc/passwd",
            "/home/runner/work/flotilla/flotilla",
            "../outside.rs",
            "src/../../x",
            "",
            "/tmp/build/src/lib.rs",
        ] {
            assert_eq!(repo_relative_path(p, "flotilla"), None, "{p}");
        }
    }

    #[test]
    fn formatter_commands() {
        let f = default_formatters();
        assert_eq!(f["black"], ["black", "-q", "-"]);
        assert_eq!(f["cargo fmt"][0], "rustfmt");
        assert_eq!(
            formatter_argv(&f["prettier"], "web/app.ts"),
            ["prettier", "--stdin-filepath", "web/app.ts"]
        );
        let c = PatchChange::Format {
            tool: "black".into(),
            path: "a.py".into(),
            command: vec![],
        };
        assert_eq!(c.file(), "a.py");
        assert_eq!(c.describe(), "format `a.py` with black");
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}".prop_filter("not a dot path", |s| s != "." && s != "..")
    }

    proptest! {
        /// Whatever the runner's layout, the checkout prefix goes and the rest is kept.
        #[test]
        fn any_checkout_prefix_is_stripped(
            rel in prop::collection::vec(segment(), 1..5),
            layout in 0usize..5,
            windows in any::<bool>(),
        ) {
            let repo = "proj";
            let prefix = [
                "/home/runner/work/proj/proj",
                "/Users/runner/work/proj/proj",
                "/__w/proj/proj",
                "/srv/actions-runner/_work/proj/proj",
                "D:/a/proj/proj",
            ][layout];
            let sep = if windows { "\\" } else { "/" };
            let full = format!("{prefix}/{}", rel.join("/")).replace('/', sep);
            let want = rel.join("/");
            prop_assert_eq!(repo_relative_path(&full, repo), Some(want.clone()));
            prop_assert_eq!(repo_relative_path(&want, repo), Some(want));
        }

        /// Adding keeps the old content as a prefix, ends with a line break, and a second add
        /// of the same distribution (any spelling) finds it listed.
        #[test]
        fn add_requirement_is_append_only_and_idempotent(
            lines in prop::collection::vec("[ -~]{0,20}", 0..6),
            trailing in any::<bool>(),
            dist in "[A-Za-z][A-Za-z0-9]{0,6}([-_.][A-Za-z0-9]{1,4})?",
        ) {
            let mut existing = lines.join("\n");
            if trailing && !existing.is_empty() {
                existing.push('\n');
            }
            match add_requirement(&existing, &dist, &[]) {
                RequirementsEdit::Added(new) => {
                    prop_assert!(new.starts_with(&existing));
                    let last_line = format!("{}\n", dist);
                    prop_assert!(new.ends_with(&last_line));
                    let respelled = dist.to_ascii_uppercase().replace('-', "_");
                    let again = add_requirement(&new, &respelled, &[]);
                    prop_assert!(matches!(again, RequirementsEdit::AlreadyListed(_)), "{:?}", again);
                }
                RequirementsEdit::AlreadyListed(line) => {
                    prop_assert_eq!(
                        requirement_name(&line).map(normalize_distribution),
                        Some(normalize_distribution(&dist))
                    );
                }
            }
        }
    }
}
