from tokenway_cli.main import main

raise SystemExit(main())
