from gum_mcp.cli import main

raise SystemExit(main())
