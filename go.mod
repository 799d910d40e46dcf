module github.com/wecomhit/wecomhit

go 1.26
