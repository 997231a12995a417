#!/bin/sh
# Lock the image down. This is the last provisioning step.
# Usage: lockdown.sh STAGING BUILD_USER ("-" when there is no build user).
# SSH off and masked, no authorized keys, root and the build user locked, no
# cloud-init user scripts or keys, the host firewall on, package updates off.
set -eu
staging=$1
build_user=${2:--}

for unit in ssh.service sshd.service ssh.socket sshd.socket; do
    systemctl disable "$unit" 2>/dev/null || true
    systemctl mask "$unit"
done
find /root /home -name authorized_keys -path '*/.ssh/*' -exec rm -f {} + 2>/dev/null || true
rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub

passwd -l root
if [ "$build_user" != - ] && getent passwd "$build_user" >/dev/null; then
    usermod --lock --shell /usr/sbin/nologin "$build_user"
fi

install -d -m 0755 /etc/cloud/cloud.cfg.d
install -m 0644 "$staging/files/cloud-lockdown.cfg" /etc/cloud/cloud.cfg.d/99-notary-lockdown.cfg

install -m 0644 "$staging/files/nftables.conf" /etc/nftables.conf
if [ -d /etc/sysconfig ]; then
    # Amazon Linux's nftables.service reads this file instead.
    echo 'include "/etc/nftables.conf"' >/etc/sysconfig/nftables.conf
fi
systemctl enable nftables.service

install -d -m 0755 /etc/apt/apt.conf.d
install -m 0644 "$staging/files/apt-no-upgrades.conf" /etc/apt/apt.conf.d/99notary-no-upgrades
for unit in apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service \
    dnf-makecache.timer dnf-automatic.timer dnf-automatic-install.timer; do
    systemctl mask "$unit"
done

rm -rf "$staging"
echo "lockdown done"
