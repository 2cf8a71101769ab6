"""`procctl benchmark`: time command lines or manifest processes, hyperfine
style, with up to -j runs in flight. runner → result data → stats / export;
never prints (the UI is procctl.ui.bench)."""
