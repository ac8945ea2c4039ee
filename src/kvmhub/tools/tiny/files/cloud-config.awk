# kvmhub tiny appliance: reads the #cloud-config subset the appliance supports.
# Handles block-style YAML: hostname, fqdn, ssh_authorized_keys, users[].ssh_authorized_keys,
# runcmd (strings, flow lists, block scalars), write_files (path, content, permissions,
# encoding, append), the default user's password and root's users[] hashed_passwd / passwd /
# plain_text_passwd. Results go to files under the directory given as -v out=DIR.

function indent_of(s) {
	match(s, /^ */)
	return RLENGTH
}

function trim(s) {
	sub(/^[ \t]+/, "", s)
	sub(/[ \t]+$/, "", s)
	return s
}

# A YAML scalar without its quotes; escapes in double quotes, '' in single quotes.
function unq(s,    out, i, c, n) {
	s = trim(s)
	if (s ~ /^".*"$/) {
		s = substr(s, 2, length(s) - 2)
		out = ""
		n = length(s)
		for (i = 1; i <= n; i++) {
			c = substr(s, i, 1)
			if (c == "\\" && i < n) {
				i++
				c = substr(s, i, 1)
				if (c == "n") c = "\n"
				else if (c == "t") c = "\t"
			}
			out = out c
		}
		return out
	}
	if (s ~ /^'.*'$/) {
		s = substr(s, 2, length(s) - 2)
		gsub(/''/, "'", s)
		return s
	}
	sub(/[ \t]+#.*$/, "", s)
	return s
}

# A flow sequence [a, "b c"] as a shell command line with each element single-quoted.
function flow_cmd(s,    parts, n, i, out, w) {
	s = trim(s)
	s = substr(s, 2, length(s) - 2)
	n = split(s, parts, ",")
	out = ""
	for (i = 1; i <= n; i++) {
		w = unq(parts[i])
		gsub(/'/, "'\\''", w)
		out = out (i > 1 ? " " : "") "'" w "'"
	}
	return out
}

function is_block(v) {
	return v ~ /^[|>][-+]?$/
}

function start_block(target, style, keyind) {
	inblock = 1
	btarget = target
	bstyle = style
	bkeyind = keyind
	bind = -1
	bbuf = ""
	bblank = 0
	bfirst = 1
}

function end_block(    text, i) {
	inblock = 0
	text = bbuf
	if (bstyle ~ /\+$/) {
		for (i = 0; i < bblank; i++) text = text "\n"
		text = text "\n"
	} else if (bstyle !~ /-$/ && !bfirst) {
		text = text "\n"
	}
	emit(btarget, text)
}

function emit(target, text) {
	if (target == "runcmd") {
		printf "%s\n", text > (out "/runcmd.sh")
	} else if (target == "content") {
		printf "%s", text > (out "/wf." nfile ".content")
		close(out "/wf." nfile ".content")
	} else if (target == "hostname") {
		printf "%s\n", text > (out "/hostname")
		close(out "/hostname")
	} else if (target == "key") {
		if (text != "") printf "%s\n", text > (out "/keys")
	} else if (target ~ /^(password|root-hash|root-plain)$/) {
		printf "%s\n", text > (out "/" target)
		close(out "/" target)
	}
}

# The users[] entry just read: root's password, if it sets one.
function flush_user() {
	if (uname == "root" && uhash != "") emit("root-hash", uhash)
	else if (uname == "root" && uplain != "") emit("root-plain", uplain)
	uname = uhash = uplain = ""
}

# One "key: value" pair seen at column col (inside a users or write_files item, or at top level).
function mapping_pair(key, val, col) {
	if (top == "users") {
		if (key == "ssh_authorized_keys" || key == "ssh-authorized-keys") {
			subkey = "keys"
			subind = col
			if (val ~ /^\[.*\]$/) flow_keys(val)
		} else {
			subkey = ""
			if (key == "name") uname = unq(val)
			else if (key == "hashed_passwd" || key == "passwd") uhash = unq(val)
			else if (key == "plain_text_passwd") uplain = unq(val)
		}
	} else if (top == "write_files") {
		if (key == "path") {
			printf "%s\n", unq(val) > (out "/wf." nfile ".path")
			close(out "/wf." nfile ".path")
		} else if (key == "content") {
			if (is_block(val)) start_block("content", val, col)
			else emit("content", unq(val))
		} else if (key == "permissions") {
			printf "%s\n", unq(val) > (out "/wf." nfile ".perm")
			close(out "/wf." nfile ".perm")
		} else if (key == "encoding") {
			printf "%s\n", unq(val) > (out "/wf." nfile ".enc")
			close(out "/wf." nfile ".enc")
		} else if (key == "append" && unq(val) ~ /^([Tt]rue|yes|on)$/) {
			printf "" > (out "/wf." nfile ".append")
			close(out "/wf." nfile ".append")
		}
	}
}

function flow_keys(s,    parts, n, i) {
	s = trim(s)
	n = split(substr(s, 2, length(s) - 2), parts, ",")
	for (i = 1; i <= n; i++) emit("key", unq(parts[i]))
}

BEGIN {
	top = ""
	inblock = 0
	nfile = 0
	listind = -1
}

{
	sub(/\r$/, "")
	line = $0
	if (inblock) {
		if (line ~ /^[ \t]*$/) {
			bblank++
			next
		}
		ind = indent_of(line)
		if (bind < 0 && ind > bkeyind) bind = ind
		if (bind >= 0 && ind >= bind) {
			text = substr(line, bind + 1)
			if (bfirst) {
				bbuf = text
				bfirst = 0
			} else {
				sep = (bstyle ~ /^>/ && bblank == 0) ? " " : "\n"
				for (i = 0; i < bblank; i++) sep = sep "\n"
				bbuf = bbuf sep text
			}
			bblank = 0
			next
		}
		end_block()
	}
	if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/ || line ~ /^(---|\.\.\.)/) next
	ind = indent_of(line)
	rest = substr(line, ind + 1)

	if (ind == 0 && rest !~ /^-( |$)/) {
		if (top == "users") flush_user()
		top = ""
		listind = -1
		subkey = ""
		if (match(rest, /^[A-Za-z0-9_-]+:/)) {
			top = substr(rest, 1, RLENGTH - 1)
			val = trim(substr(rest, RLENGTH + 1))
			if (top == "hostname" && val != "") {
				emit("hostname", unq(val))
			} else if (top == "fqdn" && val != "" && !have_fqdn) {
				have_fqdn = 1
				fq = unq(val)
				sub(/\..*/, "", fq)
				if (!seen_hostname) emit("hostname", fq)
			} else if (top == "ssh_authorized_keys" && val ~ /^\[.*\]$/) {
				flow_keys(val)
			} else if (top == "password" && val != "") {
				emit("password", unq(val))
			}
			if (top == "hostname") seen_hostname = 1
		}
		next
	}

	if (rest ~ /^-( |$)/) {
		item = trim(substr(rest, 2))
		col = ind + 1 + (length(rest) > 1 ? index(substr(rest, 2), item) : 1)
		if (listind < 0) listind = ind
		if (top == "runcmd") {
			if (is_block(item)) start_block("runcmd", item, ind)
			else if (item ~ /^\[.*\]$/) emit("runcmd", flow_cmd(item))
			else emit("runcmd", unq(item))
		} else if (top == "ssh_authorized_keys") {
			emit("key", unq(item))
		} else if (top == "users") {
			if (ind == listind) {
				flush_user()
				subkey = ""
				if (match(item, /^[A-Za-z0-9_-]+:/))
					mapping_pair(substr(item, 1, RLENGTH - 1), trim(substr(item, RLENGTH + 1)), col)
			} else if (subkey == "keys" && ind >= subind) {
				emit("key", unq(item))
			}
		} else if (top == "write_files") {
			if (ind == listind) {
				nfile++
				if (match(item, /^[A-Za-z0-9_-]+:/))
					mapping_pair(substr(item, 1, RLENGTH - 1), trim(substr(item, RLENGTH + 1)), col)
			}
		}
		next
	}

	if (match(rest, /^[A-Za-z0-9_-]+:/)) {
		mapping_pair(substr(rest, 1, RLENGTH - 1), trim(substr(rest, RLENGTH + 1)), ind)
	}
}

END {
	if (inblock) end_block()
	if (top == "users") flush_user()
}
