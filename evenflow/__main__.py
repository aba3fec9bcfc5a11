from evenflow.cli import main

raise SystemExit(main())
