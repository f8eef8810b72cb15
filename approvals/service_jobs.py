"""The `/aml job ...` commands that follow jobs: status, list, cancel, watch, unwatch."""

from __future__ import annotations

from sqlalchemy import select

from approvals import audit
from approvals.replies import Reply
from approvals.service_base import ServiceBase
from approvals.tables import JobRow, JobWatcherRow
from approvals.wording import (
    describe_job,
    when,
)
from commands import models as m
from shared.errors import (
    NotFoundUserError,
    PermissionRefusedError,
    UserError,
)


class JobCommands(ServiceBase):
    def _find_job(self, person: str, command: m.Command, ref: str, channel: str | None) -> JobRow:
        """A job by its name, or by the request that started it (`#7`)."""
        with self.store.transaction() as session:
            statement = select(JobRow)
            number = ref.lstrip("#")
            # A request id is at most 9 digits (as the parser reads ids); a longer number is
            # a job name, and as an id it would overflow the database's integer.
            if number.isascii() and number.isdigit() and len(number) <= 9:
                statement = statement.where(JobRow.request_id == int(number))
            else:
                statement = statement.where(JobRow.name == ref)
            if command.workspace:
                statement = statement.where(JobRow.workspace == command.workspace)
            job = session.scalars(statement).first()
        if job is None:
            named = self._must_name_workspace(person, command)
            where = f" --workspace {command.workspace}" if command.workspace else ""
            if named and not where:
                where = " --workspace NAME"
            raise NotFoundUserError(
                f"amlbot is not following a job `{ref}`. Jobs it follows: `/aml job list{where}`; "
                f"to follow another job of the workspace: `/aml job watch {ref}{where}`."
            )
        if job.workspace not in {ws.name for ws in self.directory.workspaces_of(person)}:
            raise PermissionRefusedError(f"Job `{ref}` is in a workspace you are not a member of.")
        return job

    def _job_status(self, person: str, command: m.JobStatusQuery, channel: str | None) -> Reply:
        job = self._find_job(person, command, command.job, channel)
        info = self.backend_for(job.workspace).get_job(job.name)
        self._remember_job_status(job.id, info.status.value)
        return Reply(text=describe_job(info))

    def _remember_job_status(self, job_id: int, status: str) -> None:
        with self.store.transaction() as session:
            row = session.get(JobRow, job_id)
            if row is not None and row.status != status:
                row.status = status
                row.updated_at = self.clock.now()

    def _job_list(self, person: str, command: m.JobList, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        with self.store.transaction() as session:
            statement = select(JobRow).where(JobRow.workspace == ws.name)
            if command.mine:
                statement = statement.where(JobRow.requester == person)
            jobs = session.scalars(statement.order_by(JobRow.id.desc()).limit(20)).all()
        if not jobs:
            return Reply(text=f"No jobs{' of yours' if command.mine else ''} in `{ws.name}` yet.")
        # One list call for the workspace refreshes every status shown: the bot's own jobs
        # (the whole workspace's history could be thousands); a watched job of someone
        # else's shows the status the follower last recorded.
        ours = self.backend_for(ws.name).list_jobs(tag_filter={"amlbot": "true"})
        live = {j.name: j for j in ours}
        lines = [f"*{'Your jobs' if command.mine else 'Jobs'} in `{ws.name}`*"]
        for job in jobs:
            info = live.get(job.name)
            status = info.status.value if info else job.status
            if info:
                self._remember_job_status(job.id, status)
            lines.append(
                f"• `{job.name}`: *{status}* on `{job.compute}` by {job.requester}, "
                f"{when(job.submitted_at)}"
            )
        return Reply(text="\n".join(lines))

    def _job_cancel(self, person: str, command: m.JobCancel, channel: str | None) -> Reply:
        job = self._find_job(person, command, command.job, channel)
        if job.requester != person and not self.directory.is_lead(person, job.workspace):
            raise PermissionRefusedError(
                f"Only {job.requester}, who started `{job.name}`, or a team lead of "
                f"`{job.workspace}` can cancel it."
            )
        info = self.backend_for(job.workspace).cancel_job(job.name)
        self._remember_job_status(job.id, info.status.value)
        with self.store.transaction() as session:
            audit.record(
                session,
                at=self.clock.now(),
                actor=person,
                action="job.cancelled",
                outcome=info.status.value,
                workspace=job.workspace,
                target=job.name,
            )
        return Reply(text=f"Cancel requested for `{job.name}`: now *{info.status.value}*.")

    def _job_watch(self, person: str, command: m.JobWatch, channel: str | None) -> Reply:
        ws = self._workspace(person, command, channel)
        info = self.backend_for(ws.name).get_job(command.job)
        now = self.clock.now()
        with self.store.transaction() as session:
            job = session.scalars(
                select(JobRow).where(JobRow.workspace == ws.name, JobRow.name == info.name)
            ).first()
            if job is None:
                job = JobRow(
                    workspace=ws.name,
                    name=info.name,
                    requester=info.tags.get("amlbot-requester", person),
                    compute=info.compute,
                    status=info.status.value,
                    studio_url=info.studio_url,
                    submitted_at=info.created_at or now,
                    updated_at=now,
                    following=not info.status.is_terminal,
                )
                session.add(job)
                session.flush()
            exists = session.scalars(
                select(JobWatcherRow).where(
                    JobWatcherRow.job_id == job.id, JobWatcherRow.person == person
                )
            ).first()
            if exists is None:
                session.add(JobWatcherRow(job_id=job.id, person=person))
        return Reply(
            text=(
                f"Watching `{info.name}` (now *{info.status.value}*); you'll be told when it "
                f"changes. Stop with `/aml job unwatch {info.name}`."
            )
        )

    def _job_unwatch(self, person: str, command: m.JobUnwatch, channel: str | None) -> Reply:
        job = self._find_job(person, command, command.job, channel)
        with self.store.transaction() as session:
            watcher = session.scalars(
                select(JobWatcherRow).where(
                    JobWatcherRow.job_id == job.id, JobWatcherRow.person == person
                )
            ).first()
            if watcher is None:
                raise UserError(f"You are not watching `{job.name}`.")
            session.delete(watcher)
        return Reply(text=f"Stopped watching `{job.name}`.")
