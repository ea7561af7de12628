//! Misusing the derives is a compile error at the attribute or field at fault, whose message
//! shows the right form. Each case in `tests/ui` has its expected message beside it; the cases
//! in `tests/ui/pass` are uses that must compile, warnings denied.

#[test]
fn misuse_of_the_derives_fails_to_compile() {
    // One set of cases, built in one project, for both kinds.
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
