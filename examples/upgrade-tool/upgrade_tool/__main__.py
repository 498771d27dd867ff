from upgrade_tool.cli import main

raise SystemExit(main())
