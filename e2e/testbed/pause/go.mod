module kpages.dev/e2e-testbed/pause

go 1.25.0
