//! The checked-in JSON Schemas are what the code generates.
//! `SMAX_UPDATE_SCHEMA=1 cargo test --test testsuite schema::` rewrites them.

use crate::common;

#[test]
fn checked_in_schemas_match_the_code() {
    for kind in ["campaign", "project"] {
        let out = common::run(&["schema", kind]);
        assert_eq!(out.status.code(), Some(0));
        let generated = String::from_utf8(out.stdout).expect("utf-8");
        let path = common::repo().join(format!("schemas/{kind}.schema.json"));
        if std::env::var_os("SMAX_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).expect("write schema");
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == generated,
            "{} is stale: run `SMAX_UPDATE_SCHEMA=1 cargo test --test testsuite schema::`",
            path.display()
        );
    }
}

#[test]
fn example_campaigns_point_editors_at_the_schema() {
    for entry in std::fs::read_dir(common::repo().join("campaigns")).expect("campaigns/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).expect("read");
            assert!(
                text.starts_with("# yaml-language-server: $schema=../schemas/campaign.schema.json"),
                "{} lacks the schema line",
                path.display()
            );
        }
    }
}
