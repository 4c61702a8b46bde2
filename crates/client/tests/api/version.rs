//! The package's version is the server's (the workspace version).

#[test]
fn the_package_version_is_the_workspace_version() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let text = std::fs::read_to_string(manifest).unwrap();
    let section = text
        .split("[workspace.package]")
        .nth(1)
        .expect("a [workspace.package] section");
    let version = section
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = "))
        .expect("a workspace version")
        .trim_matches('"');
    assert_eq!(env!("CARGO_PKG_VERSION"), version);
    assert_eq!(version, "0.1.0");
}
