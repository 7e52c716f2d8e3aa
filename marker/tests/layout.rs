//! The marker structs have one layout, stated in `eco2ai_probe_common`: the C header as a
//! C compiler lays it out, and Python's ctypes struct (python/hf_eco2ai/markers.py, the
//! one place Python states it), are checked against it.

use std::path::{Path, PathBuf};
use std::process::Command;

use eco2ai_probe_common::{STEP_ARGS_FIELDS, STEP_ARGS_LEN};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// "name offset" lines and a final "size N", as both checkers print them.
fn expected() -> String {
    let mut s: String = STEP_ARGS_FIELDS
        .iter()
        .map(|(n, o)| format!("{n} {o}\n"))
        .collect();
    s.push_str(&format!("size {STEP_ARGS_LEN}\n"));
    s
}

#[test]
fn the_c_header_lays_out_eco2ai_step_as_probe_common_says() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("layout.c");
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include \"eco2ai_marker.h\"\nint main(void) {\n",
    );
    for (n, _) in STEP_ARGS_FIELDS {
        c.push_str(&format!(
            "  printf(\"{n} %zu\\n\", offsetof(struct eco2ai_step, {n}));\n"
        ));
    }
    c.push_str("  printf(\"size %zu\\n\", sizeof(struct eco2ai_step));\n  return 0;\n}\n");
    std::fs::write(&src, c).unwrap();
    let exe = tmp.path().join("layout");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .arg("-I")
        .arg(root().join("marker/include"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .output();
    let Ok(built) = built else {
        eprintln!("SKIPPED: no C compiler ({cc})");
        return;
    };
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected());
}

#[test]
fn pythons_ctypes_struct_has_the_same_layout() {
    let markers_py = root().join("python/hf_eco2ai/markers.py");
    let script = format!(
        "import importlib.util, ctypes\n\
         spec = importlib.util.spec_from_file_location('m', r'{}')\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         for n, _ in m.Step._fields_: print(n, getattr(m.Step, n).offset)\n\
         print('size', ctypes.sizeof(m.Step))\n",
        markers_py.display()
    );
    let Ok(out) = Command::new("python3").args(["-c", &script]).output() else {
        eprintln!("SKIPPED: no python3");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected());
}

/// The functions `lib.rs` exports, by name (`*_bits` are the uprobes' integer-argument
/// twins of the float functions, not part of the C API).
fn exported() -> Vec<String> {
    let src = std::fs::read_to_string(root().join("marker/src/lib.rs")).unwrap();
    src.lines()
        .filter_map(|l| l.split("extern \"C\" fn ").nth(1))
        .filter_map(|rest| rest.split('(').next())
        .map(str::to_string)
        .filter(|n| !n.ends_with("_bits"))
        .collect()
}

#[test]
fn the_c_header_and_python_declare_every_exported_marker() {
    let names = exported();
    assert!(names.len() >= 7, "{names:?}");
    assert!(names.iter().any(|n| n == "eco2ai_step_sync"), "{names:?}");
    let header = std::fs::read_to_string(root().join("marker/include/eco2ai_marker.h")).unwrap();
    let python = std::fs::read_to_string(root().join("python/hf_eco2ai/markers.py")).unwrap();
    for n in &names {
        assert!(
            header.contains(&format!(" {n}(")),
            "{n} missing from the C header"
        );
        assert!(python.contains(n), "{n} missing from markers.py");
    }
}

/// Inputs whose cleaning every side must agree on: each non-NUL byte alone, and names
/// too long, with spaces, slashes and UTF-8 (a C string ends at its NUL, so none here).
fn names_to_clean() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = (1..=255u8).map(|b| vec![b]).collect();
    v.push(format!("data loader/{}", "x".repeat(40)).into_bytes());
    v.push("évál:1".as_bytes().to_vec());
    v.push(vec![b'a'; 33]);
    v.push(b"eval".to_vec());
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn python_cleans_phase_names_as_the_library_does() {
    let markers_py = root().join("python/hf_eco2ai/markers.py");
    let inputs: Vec<String> = names_to_clean().iter().map(|n| hex(n)).collect();
    let script = format!(
        "import importlib.util, sys\n\
         spec = importlib.util.spec_from_file_location('m', r'{}')\n\
         m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n\
         for h in sys.stdin.read().split():\n\
         \x20   print(m.clean_phase_name(bytes.fromhex(h)).encode('ascii').hex())\n",
        markers_py.display()
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("SKIPPED: no python3");
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(inputs.join("\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let python: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let library: Vec<String> = names_to_clean()
        .iter()
        .map(|n| {
            let packed = eco2ai_marker::clean_phase_name(n).unwrap();
            let len = packed.iter().position(|&b| b == 0).unwrap_or(packed.len());
            hex(&packed[..len])
        })
        .collect();
    assert_eq!(python, library);
}
