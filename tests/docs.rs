//! docs/mcp-tools.md is generated from the server's tool list; this keeps it from drifting.

#[test]
fn mcp_tools_doc_matches_the_server() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/mcp-tools.md");
    let want = flotilla::mcp::server::tools_markdown();
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::write(path, &want).unwrap();
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/mcp-tools.md is stale: run `UPDATE_DOCS=1 cargo test --test docs`"
    );
}
